"""Assemble the teachers from configuration: each role is 'programmatic' or an OpenAI-compatible endpoint."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from srl_forge.rulebook import Rulebook
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
from srl_forge.teachers.roles import Designer, Loremaster

ROLES = ("loremaster", "designer", "writer", "reviewer", "director")


class TeachersConfig(BaseModel):
    """Which provider plays each role. An endpoint is needed for every role set to 'openai'."""

    model_config = ConfigDict(frozen=True)
    providers: dict[str, Literal["programmatic", "openai"]] = Field(
        default_factory=lambda: {role: "programmatic" for role in ROLES}
    )
    endpoints: dict[str, RoleEndpoint] = Field(default_factory=dict)
    judge: RoleEndpoint | None = None  # optional line judge for evaluation (never a training reward)
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

    @cached_property
    def team(self) -> TeacherTeam:
        """The trajectory team, built when a stage needs it: only the programmatic writer reads the
        species' voice file, so encounters (the designer) never need one."""
        config, client, use = self.config, self._client, self.config.provider
        writer = (
            LLMWriter(client("writer"))
            if use("writer") == "openai"
            else ProgrammaticWriter(load_voice(self._voices_root, self._rulebook), seed=config.seed)
        )
        if use("reviewer") == "openai":
            reviewer_client = client("reviewer")
            reviewers = [LLMReviewer(reviewer_client, aspect) for aspect in ("lore", "character", "rules")]
        else:
            reviewers = [LoreReviewer(), CharacterReviewer(), RulesReviewer()]
        director = LLMDirector(client("director")) if use("director") == "openai" else ProgrammaticDirector()
        return TeacherTeam(
            writers=[writer],
            reviewers=reviewers,
            director=director,
            proposals_per_writer=config.proposals_per_writer,
            concurrency=config.concurrency,
            labels={role: config.label(role) for role in ROLES},
        )
