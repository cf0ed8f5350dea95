"""Reward functions with TRL's signature `(prompts, completions, **columns) -> list[float]`.

SRL step reward (arXiv 2510.25992): the policy writes `<think>...</think>` and then exactly one step
`N. **TITLE** action`. The reward is the difflib similarity 2M/T between the generated action and the
expert's action, thinking excluded; -1.0 when the output breaks the format.

difflib choices the paper leaves open, fixed here:
- argument order: `SequenceMatcher(None, expert_action, generated_action)` — expert first. The
  ratio is not symmetric in general, so the order is part of the definition.
- `autojunk=False`: with the default heuristic, strings of 200+ characters treat frequent
  characters as junk and score differently by order; we want plain 2M/T.
cydifflib computes exactly difflib's value, faster; the standard library is the fallback.
"""

from __future__ import annotations

import re

try:
    from cydifflib import SequenceMatcher
except ImportError:  # pragma: no cover - same values, slower
    from difflib import SequenceMatcher

from srl_forge.trajectory import parse_step

FORMAT_PENALTY = -1.0
THINK_THEN_ANSWER = re.compile(r"^\s*<think>(.*?)</think>\s*(.*?)\s*$", re.DOTALL)


def completion_text(completion) -> str:
    """TRL passes conversational completions as message lists, standard ones as strings."""
    if isinstance(completion, list):
        return completion[0]["content"] if completion else ""
    return completion


def split_thinking(text: str) -> tuple[str, str] | None:
    """(thinking, answer) when the text is `<think>...</think>` followed by an answer, else None."""
    match = THINK_THEN_ANSWER.match(text)
    if not match or "<think>" in match.group(2) or "</think>" in match.group(2):
        return None
    return match.group(1).strip(), match.group(2)


def generated_action(text: str) -> str | None:
    """The action of the single step after the thinking, or None when the format is broken."""
    parts = split_thinking(text)
    if parts is None:
        return None
    step = parse_step(parts[1])
    return step[2] if step else None


def action_similarity(expert: str, generated: str) -> float:
    return SequenceMatcher(None, expert, generated, autojunk=False).ratio()


def step_similarity_reward(prompts, completions, expert_action, **kwargs) -> list[float]:
    """SRL: similarity of the generated step's action to the expert's; -1 on a broken format."""
    rewards = []
    for completion, expert in zip(completions, expert_action):
        action = generated_action(completion_text(completion))
        rewards.append(FORMAT_PENALTY if action is None else action_similarity(expert, action))
    return rewards


def step_format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the output is `<think>...</think>` then exactly one step, else 0.0 (logged, weight 0)."""
    return [0.0 if generated_action(completion_text(c)) is None else 1.0 for c in completions]


# --- RLVR: the outcome reward the rules engine verifies ---------------------------------------

ACTION_LINE = re.compile(r"(?m)ACTION:\s*([a-z_]+)\s*$")
SAY_LINE = re.compile(r'(?m)SAY:\s*"([^"\n]+)"\s*$')

OUTCOME_FORMAT_OR_SAFETY_FAILURE = -1.0  # broken format, or a guardrail violation anywhere in the output
OUTCOME_UNACCEPTABLE_ACTION = 0.0  # forbidden, ignores a requirement, unknown, or the rules conflict
OUTCOME_OUT_OF_CHARACTER = 0.5  # acceptable action, but the line breaks the species' dialogue constraints
OUTCOME_VERIFIED = 1.0  # acceptable action and an in-character line


def parse_decision(text: str) -> tuple[str, str] | None:
    """(action, spoken line) from `<think>...</think>` then `ACTION: <id>` and `SAY: "..."`, else None."""
    parts = split_thinking(text)
    if parts is None:
        return None
    actions, lines = ACTION_LINE.findall(parts[1]), SAY_LINE.findall(parts[1])
    if len(actions) != 1 or len(lines) != 1:
        return None
    return actions[0], lines[0]


def outcome_score(text: str, acceptable_actions: list[str], dialogue_constraints_json: str) -> float:
    """The RLVR outcome reward of one output; see the OUTCOME_* values."""
    from srl_forge.guardrails import check as guardrail_violations
    from srl_forge.rules_engine import DialogueConstraints

    if guardrail_violations(text):
        return OUTCOME_FORMAT_OR_SAFETY_FAILURE
    decision = parse_decision(text)
    if decision is None:
        return OUTCOME_FORMAT_OR_SAFETY_FAILURE
    action, line = decision
    if action not in acceptable_actions:
        return OUTCOME_UNACCEPTABLE_ACTION
    if DialogueConstraints.model_validate_json(dialogue_constraints_json).check(line):
        return OUTCOME_OUT_OF_CHARACTER
    return OUTCOME_VERIFIED


def verified_outcome_reward(prompts, completions, acceptable_actions, dialogue_constraints_json, **kwargs) -> list[float]:
    """RLVR: the rules engine's verdict on the final action and line (ground truth from rlvr_dataset)."""
    return [outcome_score(completion_text(c), acceptable, constraints)
            for c, acceptable, constraints in zip(completions, acceptable_actions, dialogue_constraints_json)]


def decision_format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the output is `<think>...</think>` then one ACTION line and one SAY line (logged, weight 0)."""
    return [0.0 if parse_decision(completion_text(c)) is None else 1.0 for c in completions]
