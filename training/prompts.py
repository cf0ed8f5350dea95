"""The policy's prompts and output formats, shared by SRL, RLVR, evaluation and serving.

Short on purpose: every prompt token is paid in every training step on a CPU (a system prompt of ~45
tokens instead of ~75 shortens the RLVR rows by a fifth).
"""

from __future__ import annotations

from srl_forge.encounter import Encounter
from srl_forge.trajectory import describe_encounter

SRL_SYSTEM = (
    "You are a {species} in a dark-fantasy game, reasoning one step at a time. Think inside <think>...</think>, "
    "then write only the next step, 'N. **TITLE** action', on one line."
)

RLVR_SYSTEM = (
    "You are a {species} in a dark-fantasy game. Inside <think>...</think> name the rules that apply, then answer "
    "'ACTION: <id>' and 'SAY: \"<line>\"'. Actions: {actions}."
)


def srl_prompt(encounter: Encounter, previous_steps: list[str], step_number: int, next_title: str | None) -> list[dict]:
    so_far = "\n".join(previous_steps) if previous_steps else "(none yet)"
    ask = f"Write step {step_number}" + (f", a **{next_title}** step." if next_title else ".")
    return [
        {"role": "system", "content": SRL_SYSTEM.format(species=encounter.species)},
        {"role": "user", "content": f"{describe_encounter(encounter)}\n\nSteps so far:\n{so_far}\n\n{ask}"},
    ]


def rlvr_prompt(encounter: Encounter, actions: tuple[str, ...], persona_intro: str | None = None) -> list[dict]:
    """The decision prompt; a named NPC (Tier 3) gets its persona's introduction first."""
    system = RLVR_SYSTEM.format(species=encounter.species, actions=", ".join(actions))
    return [
        {"role": "system", "content": f"{persona_intro}\n{system}" if persona_intro else system},
        {"role": "user", "content": describe_encounter(encounter)},
    ]


def render_answer(thought: str, action: str | None, line: str | None) -> str:
    """An answer in the policy's format: `<think>...</think>`, then `ACTION: <id>` and `SAY: "..."`."""
    return f'<think>{thought}</think>\nACTION: {action}\nSAY: "{line}"'
