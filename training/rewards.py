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

import random

try:
    from cydifflib import SequenceMatcher
except ImportError:  # pragma: no cover - same values, slower
    from difflib import SequenceMatcher

from srl_forge.grounding import grounding_score, is_stock
from srl_forge.guardrails import check as guardrail_violations
from srl_forge.policy import (
    generated_action,
    parse_decision,
    render_step_answer,
    spoken_line,
)
from srl_forge.rules_engine import DialogueConstraints
from training.outcome_dataset import scores_by_action

FORMAT_PENALTY = -1.0


def completion_text(completion) -> str:
    """TRL passes conversational completions as message lists, standard ones as strings."""
    if isinstance(completion, list):
        return completion[0]["content"] if completion else ""
    return completion


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


# --- RLVR: the outcome reward the rules engine verifies --------------------------------------
#
# The RLVR reward is a weighted sum of small parts, each a TRL reward function logged on its own:
#
# - graded_decision_reward (weight 1.0): the engine's graded score of the action (`srl_forge.grading`: top
#   1.0, favoured 0.5-0.3, allowed 0.2, unacceptable 0); -1 on a broken format or any guardrail violation
# - line_in_character_reward (0.15): 1 when the line meets the species' dialogue constraints (markers,
#   banned words, length)
# - line_grounding_reward (0.15): 0.5 per kind of reference to this encounter (faction, item, action,
#   words, place, hour...), at most 1; 0 when it parrots the player
# - line_originality_reward (0.1): 1 unless the line is (nearly) one of the species' stock phrases
#
# The decision dominates (1.0 of 1.4) because it is what the rules verify exactly; the line parts (0.4
# together) only order answers with equally good decisions, so a well-spoken worse decision never beats
# the right one (runner-up 0.5 + a perfect line 0.4 = 0.9 < the top action with any line, 1.0). A line part
# is 0 on a broken format: the -1 is paid once, by the decision part. Every column a part reads is computed
# by the rules engine and `srl_forge.grounding` when the dataset is built (`training.outcome_dataset`).

FORMAT_OR_SAFETY_FAILURE = -1.0
REWARD_WEIGHTS = {
    "graded_decision_reward": 1.0,
    "line_in_character_reward": 0.15,
    "line_grounding_reward": 0.15,
    "line_originality_reward": 0.1,
}


def decision_score(text: str, action_scores: dict[str, float]) -> float:
    """The graded decision score of one output, -1 on a broken format or a guardrail violation."""
    if guardrail_violations(text):
        return FORMAT_OR_SAFETY_FAILURE
    decision = parse_decision(text)
    if decision is None:
        return FORMAT_OR_SAFETY_FAILURE
    return float(action_scores.get(decision[0], 0.0))


def graded_decision_reward(prompts, completions, action_scores, **kwargs) -> list[float]:
    """The rules engine's graded verdict on the chosen action (ground truth from rlvr_dataset)."""
    return [
        decision_score(completion_text(c), scores_by_action(scores)) for c, scores in zip(completions, action_scores)
    ]


def line_in_character_reward(prompts, completions, dialogue_constraints, **kwargs) -> list[float]:
    """1.0 when the spoken line meets the species' dialogue constraints, else 0.0."""
    out = []
    for c, constraints in zip(completions, dialogue_constraints):
        line = spoken_line(completion_text(c))
        out.append(0.0 if line is None or DialogueConstraints.model_validate(constraints).check(line) else 1.0)
    return out


def line_grounding_reward(prompts, completions, grounding_terms, player_utterance, **kwargs) -> list[float]:
    """0.5 per kind of thing in this encounter the line refers to (at most 1.0); 0.0 when it parrots the player."""
    out = []
    for c, terms, utterance in zip(completions, grounding_terms, player_utterance):
        line = spoken_line(completion_text(c))
        out.append(0.0 if line is None else grounding_score(line, terms, utterance))
    return out


def line_originality_reward(prompts, completions, stock_lines, **kwargs) -> list[float]:
    """1.0 unless the spoken line is (nearly) one of the species' stock phrases."""
    return [
        0.0 if (line := spoken_line(completion_text(c))) is None or is_stock(line, list(stock)) else 1.0
        for c, stock in zip(completions, stock_lines)
    ]


def decision_format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the output is `<think>...</think>` then one ACTION line and one SAY line (logged, weight 0)."""
    return [0.0 if parse_decision(completion_text(c)) is None else 1.0 for c in completions]


RLVR_REWARD_FUNCS = (
    graded_decision_reward,
    line_in_character_reward,
    line_grounding_reward,
    line_originality_reward,
    decision_format_reward,
)
RLVR_REWARD_WEIGHTS = tuple(REWARD_WEIGHTS.get(f.__name__, 0.0) for f in RLVR_REWARD_FUNCS)


def reward_spread(rows: list[dict], sample: int = 32, group: int = 4, seed: int = 0) -> float:
    """Mean within-group std of the SRL reward when each sampled row is scored against its own expert
    step and other rows' steps of the same kind: zero means GRPO would see no signal."""
    rng = random.Random(seed)
    by_title: dict[str, list[dict]] = {}
    for row in rows:
        by_title.setdefault(row["expert_title"], []).append(row)
    spreads = []
    for row in rng.sample(rows, min(sample, len(rows))):
        peers = [r for r in by_title[row["expert_title"]] if r["row_id"] != row["row_id"]]
        candidates = [row] + rng.sample(peers, min(group - 1, len(peers)))
        outputs = [render_step_answer(".", c["expert_step"]) for c in candidates]
        rewards = step_similarity_reward(None, outputs, [row["expert_action"]] * len(outputs))
        mean = sum(rewards) / len(rewards)
        spreads.append((sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5)
    return sum(spreads) / max(1, len(spreads))
