"""Expert trajectories in the SRL paper's format: numbered steps `N. **TITLE** ACTION`.

Each step carries the inner monologue that led to it (`thought`) and the action text. A monster's
trajectory goes from assessing the encounter, to the lore that matters, to the rules that apply, to
the decision (`ACTION: <id>`) and the line it speaks (`SAY: "..."`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from srl_forge.encounter import Encounter

StepTitle = Literal["ASSESS", "RECALL LORE", "APPLY RULE", "DECIDE", "SPEAK"]
STEP_LINE = re.compile(r"^\s*(\d+)\.\s+\*\*([A-Z][A-Z ]*[A-Z])\*\*\s+(.+?)\s*$", re.DOTALL)
DECISION = re.compile(r"ACTION:\s*([a-z_]+)")
SPOKEN = re.compile(r'SAY:\s*"(.*)"', re.DOTALL)


class TrajectoryStep(BaseModel):
    model_config = ConfigDict(frozen=True)
    title: StepTitle
    thought: str = Field(min_length=1, description="the inner monologue behind this step")
    action: str = Field(min_length=1, description="what the step does, in one line")

    @field_validator("action")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return " ".join(value.split())


class Trajectory(BaseModel):
    model_config = ConfigDict(frozen=True)
    encounter_id: str
    species: str
    steps: tuple[TrajectoryStep, ...] = Field(min_length=3)
    citations: tuple[str, ...] = ()  # lore documents the trajectory relies on
    rule_ids: tuple[str, ...] = ()  # rules the trajectory applies
    teacher: str = "programmatic"

    def step_text(self, k: int) -> str:
        """Step k (1-based) rendered as `k. **TITLE** action`."""
        step = self.steps[k - 1]
        return f"{k}. **{step.title}** {step.action}"

    def render(self) -> str:
        return "\n".join(self.step_text(k) for k in range(1, len(self.steps) + 1))

    @property
    def final_action(self) -> str | None:
        for step in reversed(self.steps):
            if step.title == "DECIDE" and (m := DECISION.search(step.action)):
                return m.group(1)
        return None

    @property
    def spoken_line(self) -> str | None:
        for step in reversed(self.steps):
            if step.title == "SPEAK" and (m := SPOKEN.search(step.action)):
                return m.group(1)
        return None

    def structural_problems(self) -> list[str]:
        """Format problems: the trajectory must assess first, decide once, then speak last."""
        problems = []
        titles = [s.title for s in self.steps]
        if titles[0] != "ASSESS":
            problems.append("the first step must be ASSESS")
        if titles.count("DECIDE") != 1 or self.final_action is None:
            problems.append("exactly one DECIDE step with 'ACTION: <id>' is required")
        if titles[-1] != "SPEAK" or self.spoken_line is None:
            problems.append('the last step must be SPEAK with SAY: "..."')
        if "DECIDE" in titles and "SPEAK" in titles and titles.index("DECIDE") > titles.index("SPEAK"):
            problems.append("DECIDE must come before SPEAK")
        return problems


def parse_step(text: str) -> tuple[int, str, str] | None:
    """(number, title, action) of a single rendered step, or None when it is not one step."""
    stripped = text.strip()
    if not stripped or "\n" in stripped:
        return None
    match = STEP_LINE.match(stripped)
    if not match:
        return None
    return int(match.group(1)), match.group(2), match.group(3)


def describe_encounter(encounter: Encounter) -> str:
    """A compact, readable description of an encounter for prompts (kept short for CPU budgets)."""
    g, n, p, loc = encounter.game, encounter.npc, encounter.player, encounter.location
    events = ", ".join(g.live_events) or "none"
    items = ", ".join(p.items) or "nothing"
    place = loc.kind + (" (invited)" if loc.invited else "") + (" (consecrated)" if loc.consecrated else "")
    said = f' and says "{p.utterance}"' if p.utterance else ""
    return (
        f"World: {g.time_of_day}, {g.moon_phase} moon, {g.weather}; live events: {events}.\n"
        f"You: {n.species}, tier {n.tier}, hunger {n.hunger:.2f}, health {n.health:.2f}, allies {n.allies}.\n"
        f"Player: {p.party_size} {p.faction} carrying {items}; they {p.action}{said}.\n"
        f"Place: {place}."
    )


def assess_text(encounter: Encounter) -> str:
    """The ASSESS step's action: what the monster perceives, in one line (no decision in it)."""
    g, n, p = encounter.game, encounter.npc, encounter.player
    return (f"{g.time_of_day.capitalize()}, {g.moon_phase} moon, {g.weather}"
            + (f", {', '.join(g.live_events)}" if g.live_events else "")
            + f"; {p.party_size} {p.faction} {p.action} at the {encounter.location.kind}"
            + (f" carrying {', '.join(p.items)}" if p.items else "")
            + f"; I am {n.species}, hunger {n.hunger:.2f}, health {n.health:.2f}, allies {n.allies}.")
