"""Expert trajectories in the SRL paper's format: numbered steps `N. **TITLE** ACTION`.

Each step carries the inner monologue that led to it (`thought`) and the action text. A monster's
trajectory goes from assessing the encounter, to the lore that matters, to the rules that apply, to
the decision (`ACTION: <id>`) and the line it speaks (`SAY: "..."`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from srl_forge.policy import action_in, render_step, spoken_in

StepTitle = Literal["ASSESS", "RECALL LORE", "APPLY RULE", "DECIDE", "SPEAK"]  # policy.STEP_TITLES


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
        return render_step(k, step.title, step.action)

    def render(self) -> str:
        return "\n".join(self.step_text(k) for k in range(1, len(self.steps) + 1))

    @property
    def final_action(self) -> str | None:
        for step in reversed(self.steps):
            if step.title == "DECIDE" and (action := action_in(step.action)):
                return action
        return None

    @property
    def spoken_line(self) -> str | None:
        for step in reversed(self.steps):
            if step.title == "SPEAK" and (line := spoken_in(step.action)) is not None:
                return line
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
