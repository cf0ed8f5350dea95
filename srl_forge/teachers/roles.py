"""Role interfaces and the objects the roles exchange."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from srl_forge.encounter import Encounter, GameState
from srl_forge.encounters import DesignSpec, EncounterSet
from srl_forge.lore import CitedEntry, Dossier, SpeciesLore
from srl_forge.rulebook import Rulebook
from srl_forge.rules_engine import Decision
from srl_forge.trajectory import Trajectory

ReviewAspect = Literal["lore", "character", "rules"]


class Brief(BaseModel):
    """What a trajectory writer is told about one encounter: lore, and what the rules allow."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    species: str
    dossier: Dossier
    decision: Decision
    rule_descriptions: dict[str, str]  # fired rule id -> description
    recalled: tuple[CitedEntry, ...] = ()  # dossier entries semantic memory recalled for this encounter

    def recalled_text(self) -> str:
        """What semantic memory recalled for this encounter, each entry with its citation, as a prompt section
        (empty when nothing was recalled): an LLM teacher sees the same memory the programmatic writer uses."""
        if not self.recalled:
            return ""
        entries = "\n".join(f"- {entry.source}: {entry.text}" for entry in self.recalled)
        return f"Recalled from memory for this encounter (cite as '<document id>: <entry>'):\n{entries}\n\n"

    def rules_summary(self) -> str:
        lines = [
            f"- {e.rule_id} (priority {e.priority}, {e.status}): {e.effect} — "
            f"{self.rule_descriptions.get(e.rule_id, '')}"
            for e in self.decision.trace
        ]
        lines.append(f"Acceptable actions, best first: {', '.join(self.decision.acceptable) or 'none'}")
        if dialogue := self.decision.dialogue.describe():
            lines.append(dialogue)
        return "\n".join(lines)


class Review(BaseModel):
    model_config = ConfigDict(frozen=True)
    aspect: ReviewAspect
    approved: bool
    issues: list[str] = Field(default_factory=list)


class QualificationScore(BaseModel):
    """A panel member's score on the calibration set (see `qualification.py`), and whether it met its level."""

    model_config = ConfigDict(frozen=True)
    name: str
    role: Literal["writer", "reviewer"]
    score: float
    level: float
    qualified: bool
    detail: str  # what the score is made of, in words


class Loremaster(Protocol):
    def consolidate(self, lore: SpeciesLore) -> Dossier: ...


class Designer(Protocol):
    def design(
        self,
        rulebook: Rulebook,
        live_state: GameState,
        spec: DesignSpec,
        mined: list[Encounter],
        went_wrong: frozenset[str] = frozenset(),
    ) -> EncounterSet: ...


class TrajectoryWriter(Protocol):
    name: str  # in the ledger, the metadata and the trajectory's `teacher`

    def write(self, encounter: Encounter, brief: Brief, variant: int) -> Trajectory: ...


class Reviewer(Protocol):
    aspect: ReviewAspect
    name: str  # one panel member may judge several aspects, one Reviewer each

    def review(self, trajectory: Trajectory, encounter: Encounter, brief: Brief) -> Review: ...


class Director(Protocol):
    def direct(
        self, encounter: Encounter, brief: Brief, proposals: list[Trajectory], reviews: list[list[Review]]
    ) -> Trajectory: ...
