"""The policy's prompts and output formats, shared by SRL, RLVR, evaluation and serving."""

from __future__ import annotations

from srl_forge.encounter import Encounter
from srl_forge.trajectory import describe_encounter

SRL_SYSTEM = (
    "You are a {species} in a dark-fantasy game. Reason as an expert player of your kind, one step at a "
    "time. First think inside <think>...</think>, then write ONLY the next step as "
    "'N. **TITLE** action' on one line. Titles: ASSESS, RECALL LORE, APPLY RULE, DECIDE, SPEAK."
)

RLVR_SYSTEM = (
    "You are a {species} in a dark-fantasy game. Think inside <think>...</think>, then answer with two "
    "lines: 'ACTION: <action id>' and 'SAY: \"<what you say>\"'. Actions: {actions}."
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
