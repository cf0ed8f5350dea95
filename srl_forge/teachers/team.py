"""Assemble the teachers from configuration: each role is 'programmatic' or an OpenAI-compatible endpoint."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from srl_forge.lore import Dossier
from srl_forge.rulebook import Rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import TeacherTeam
from srl_forge.teachers.judge import LineJudge
from srl_forge.teachers.lines import load_voice
from srl_forge.teachers.openai_compatible import (
    LLMDesigner,
    LLMDirector,
    LLMLoremaster,
    LLMReviewer,
    LLMWriter,
    ResponseCache,
    RoleClient,
    RoleEndpoint,
    UsageLedger,
)
from srl_forge.teachers.programmatic import (
    CharacterReviewer,
    LoreReviewer,
    ProgrammaticDesigner,
    ProgrammaticDirector,
    ProgrammaticLoremaster,
    ProgrammaticWriter,
    RulesReviewer,
)
from srl_forge.teachers.qualification import QualificationConfig, Qualified, qualify
from srl_forge.teachers.roles import Designer, Loremaster, ReviewAspect

ROLES = ("loremaster", "designer", "writer", "reviewer", "director")
ASPECTS: tuple[ReviewAspect, ...] = ("lore", "character", "rules")
PROGRAMMATIC_REVIEWERS = {"lore": LoreReviewer, "character": CharacterReviewer, "rules": RulesReviewer}


class PanelMember(BaseModel):
    """One model of the panel: its name (in the ledger and the metadata) and its endpoint; no endpoint, the
    programmatic expert."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:+-]+$")
    endpoint: RoleEndpoint | None = None


class ReviewerMember(PanelMember):
    aspects: tuple[ReviewAspect, ...] = Field(default=ASPECTS, min_length=1)  # what this reviewer judges


class TeachersConfig(BaseModel):
    """Which provider plays each role. An endpoint is needed for every role set to 'openai'."""

    model_config = ConfigDict(frozen=True)
    providers: dict[str, Literal["programmatic", "openai"]] = Field(
        default_factory=lambda: {role: "programmatic" for role in ROLES}
    )
    endpoints: dict[str, RoleEndpoint] = Field(default_factory=dict)
    judge: RoleEndpoint | None = None  # optional line judge for evaluation (never a training reward)
    # A panel, as the seed describes it: any number of writers and reviewers, each its own model (and provider),
    # each reviewer judging its aspects. Empty: the `writer` / `reviewer` role above plays it alone.
    writers: tuple[PanelMember, ...] = ()
    reviewers: tuple[ReviewerMember, ...] = ()
    # the minimum level a writer or reviewer meets on a calibration set before its proposals or votes count
    qualification: QualificationConfig = QualificationConfig()
    seed: int = 0
    proposals_per_writer: int = 2
    concurrency: int = 4

    @model_validator(mode="after")
    def _endpoints_for_openai_roles(self):
        for role, provider in self.providers.items():
            if role not in ROLES:
                raise ValueError(f"unknown teacher role {role!r} (roles: {', '.join(ROLES)})")
            if provider == "openai" and role not in self.endpoints:
                raise ValueError(f"teacher role {role!r} uses 'openai' but has no endpoint")
        names = [m.name for m in (*self.writers, *self.reviewers)]
        duplicated = sorted(
            {n for n in names if names.count(n) > 1} | (set(names) & set(ROLES)) | ({"judge"} & set(names))
        )
        if duplicated:
            raise ValueError(f"panel member names must be unique and not a role's: {', '.join(duplicated)}")
        if self.reviewers:
            uncovered = [a for a in ASPECTS if not any(a in r.aspects for r in self.reviewers)]
            if uncovered:
                raise ValueError(f"no reviewer judges {', '.join(uncovered)}: every aspect needs one")
        return self

    def provider(self, role: str) -> str:
        return self.providers.get(role, "programmatic")

    def label(self, role: str) -> str:
        return f"openai:{self.endpoints[role].model}" if self.provider(role) == "openai" else "programmatic"


class Teachers:
    """The loremaster, the designer and the trajectory team, built for one species."""

    def __init__(self, config: TeachersConfig, cache_root: Path, voices_root: Path, rulebook: Rulebook):
        self.config = config
        self.ledger = UsageLedger()
        cache = ResponseCache(cache_root)

        def client(role: str) -> RoleClient:
            return RoleClient(role, config.endpoints[role], cache, self.ledger, config.concurrency)

        use = config.provider
        for role in ROLES:  # a missing API key fails the build, before any call is made
            if use(role) == "openai":
                client(role).require_api_key()
        self._members: dict[str, RoleClient] = {}
        for member in (*config.writers, *config.reviewers):
            if member.endpoint is not None:
                member_client = RoleClient(member.name, member.endpoint, cache, self.ledger, config.concurrency)
                member_client.require_api_key()
                self._members[member.name] = member_client
        self.judge: LineJudge | None = None
        if config.judge:
            judge_client = RoleClient("judge", config.judge, cache, self.ledger, config.concurrency)
            judge_client.require_api_key()
            self.judge = LineJudge(judge_client, config.concurrency)

        self.loremaster: Loremaster = (
            LLMLoremaster(client("loremaster")) if use("loremaster") == "openai" else ProgrammaticLoremaster()
        )
        self.designer: Designer = (
            LLMDesigner(client("designer"), seed=config.seed)
            if use("designer") == "openai"
            else ProgrammaticDesigner(seed=config.seed)
        )
        self._client, self._voices_root, self._rulebook = client, voices_root, rulebook

    def qualified_team(self, engine: RulesEngine, dossier: Dossier) -> Qualified:
        """The trajectory team with only the writers and reviewers that met their level on the calibration set
        (graded by `engine`; the good trajectories are the programmatic expert's)."""
        reference = ProgrammaticWriter(load_voice(self._voices_root, self._rulebook), seed=self.config.seed)
        return qualify(self.team, engine, dossier, reference, self.config.qualification)

    @cached_property
    def team(self) -> TeacherTeam:
        """The trajectory team, built when a stage needs it: only the programmatic writer reads the
        species' voice file, so encounters (the designer) never need one."""
        config, client, use = self.config, self._client, self.config.provider

        def programmatic_writer(name: str = "programmatic"):
            return ProgrammaticWriter(load_voice(self._voices_root, self._rulebook), seed=config.seed, name=name)

        if config.writers:
            writers = [
                LLMWriter(self._members[m.name], m.name) if m.endpoint else programmatic_writer(m.name)
                for m in config.writers
            ]
        else:
            writers = [LLMWriter(client("writer")) if use("writer") == "openai" else programmatic_writer()]
        if config.reviewers:
            reviewers = [
                LLMReviewer(self._members[m.name], aspect, m.name)
                if m.endpoint
                else PROGRAMMATIC_REVIEWERS[aspect](m.name)
                for m in config.reviewers
                for aspect in m.aspects
            ]
        elif use("reviewer") == "openai":
            reviewer_client = client("reviewer")
            reviewers = [LLMReviewer(reviewer_client, aspect) for aspect in ASPECTS]
        else:
            reviewers = [LoreReviewer(), CharacterReviewer(), RulesReviewer()]
        director = LLMDirector(client("director")) if use("director") == "openai" else ProgrammaticDirector()
        return TeacherTeam(
            writers=writers,
            reviewers=reviewers,
            director=director,
            proposals_per_writer=config.proposals_per_writer,
            concurrency=config.concurrency,
            labels={role: config.label(role) for role in ROLES},
        )
