"""Teachers behind any OpenAI-compatible endpoint (OpenRouter, vLLM, Ollama) via openai + instructor.

- Each role has its own model, base URL and API-key environment variable; keys are read from the
  environment at call time and never stored or logged.
- Transport failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff
  by tenacity (a 429's Retry-After is honoured); malformed JSON is re-asked by instructor
  (`validation_retries`). When the retries run out the call raises `TeacherUnavailable` (role,
  endpoint, cause): an outage is never mistaken for a teacher's answer.
- A role's API key must be in its environment variable when the teachers are built (`require_api_key`).
- Responses are cached by a hash of role, model, prompt and response schema: re-running with
  unchanged inputs makes no calls.
- Token use and cost are accounted per role, with transport retries and re-asks for malformed output.
  The retries themselves are logged at DEBUG only (instructor logs each failed attempt as an ERROR,
  which on a flaky endpoint is hundreds of lines); `UsageLedger.summary` is the one line per role a
  run reports instead.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import TypeVar

import instructor
import openai
from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from srl_forge.encounter import Encounter, GameState
from srl_forge.encounters import DesignSpec, EncounterDesigner, EncounterSet
from srl_forge.errors import InputError
from srl_forge.hashing import content_hash
from srl_forge.lore import CitedEntry, Dossier, SpeciesLore
from srl_forge.policy import describe_encounter
from srl_forge.rulebook import Rulebook
from srl_forge.teachers.roles import Brief, Review, ReviewAspect
from srl_forge.text_screen import screen
from srl_forge.trajectory import Trajectory, TrajectoryStep

T = TypeVar("T", bound=BaseModel)


class _AsDebug(logging.Handler):
    """Re-log a library's records (its sub-loggers' too) at DEBUG under `srl_forge.teachers.<name>`: kept for
    whoever turns on debug logging, silent on a normal run's stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(f"{__name__}.{record.name}")
        if target.isEnabledFor(logging.DEBUG):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            target.handle(record)


# instructor logs every failed attempt (which tenacity and instructor then retry) as an ERROR; the HTTP client
# logs every request at INFO. What a run needs is the per-role summary, and TeacherUnavailable when it fails.
for _name in ("instructor", "httpx", "httpx2"):
    _library = logging.getLogger(_name)
    _library.addHandler(_AsDebug())
    _library.propagate = False


class RoleEndpoint(BaseModel):
    """Where one role's model lives and what it costs."""

    model_config = ConfigDict(frozen=True)
    model: str
    base_url: str = "https://openrouter.ai/api/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the environment variable
    temperature: float = 0.7
    max_tokens: int = 1500
    timeout_s: float = 60.0
    transport_retries: int = 4
    backoff_initial_s: float = 0.5
    validation_retries: int = 2
    usd_per_1k_prompt_tokens: float = 0.0
    usd_per_1k_completion_tokens: float = 0.0


class ResponseCache:
    """Parsed responses as JSON files named by their key; written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict | None:
        path = self.root / f"{key}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, key: str, value: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle)
        os.replace(tmp, self.root / f"{key}.json")


LEDGER_KEYS = ("calls", "cache_hits", "retries", "reasks", "prompt_tokens", "completion_tokens", "cost_usd")


class UsageLedger:
    """Calls, cache hits, tokens and cost per role (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.by_role: dict[str, dict[str, float]] = {}

    def _row(self, role: str) -> dict[str, float]:
        return self.by_role.setdefault(
            role,
            dict.fromkeys(LEDGER_KEYS, 0) | {"cost_usd": 0.0},
        )

    def record(self, role: str, endpoint: RoleEndpoint, usage) -> None:
        prompt = getattr(usage, "prompt_tokens", 0) or 0
        completion = getattr(usage, "completion_tokens", 0) or 0
        with self._lock:
            row = self._row(role)
            row["calls"] += 1
            row["prompt_tokens"] += prompt
            row["completion_tokens"] += completion
            row["cost_usd"] += (
                prompt * endpoint.usd_per_1k_prompt_tokens + completion * endpoint.usd_per_1k_completion_tokens
            ) / 1000

    def count(self, role: str, what: str) -> None:
        with self._lock:
            self._row(role)[what] += 1

    def totals(self) -> dict[str, float]:
        return {k: sum(row[k] for row in self.by_role.values()) for k in LEDGER_KEYS}

    def summary(self) -> list[str]:
        """One line per role that called a model: calls, cache hits, retries and re-asks."""
        return [
            f"teacher {role}: {int(row['calls'])} calls, {int(row['cache_hits'])} from the cache, "
            f"{int(row['retries'])} transport retries, {int(row['reasks'])} re-asks for malformed output"
            for role, row in sorted(self.by_role.items())
            if row["calls"] or row["cache_hits"] or row["retries"] or row["reasks"]
        ]


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, timeouts and dropped connections are worth another try; anything else is not."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(
            exc, (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError)
        ):
            return True
        if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


MAX_RETRY_AFTER_S = 60.0


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The Retry-After a server sent with a 429 / 503 (seconds), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        value = response.headers.get("retry-after") if response is not None else None
        if value:
            try:
                return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
            except ValueError:
                return None
        exc = exc.__cause__ or exc.__context__
    return None


class TeacherUnavailable(RuntimeError):
    """A teacher's endpoint kept failing transiently (429, 5xx, timeouts, dropped connections) after
    every retry. Not an answer: nothing is cached or recorded for the call, a later run tries again."""

    def __init__(self, role: str, endpoint: RoleEndpoint, attempts: int, cause: BaseException):
        self.role, self.base_url = role, endpoint.base_url
        super().__init__(
            f"teacher role {role!r} at {endpoint.base_url} (model {endpoint.model}) unavailable after "
            f"{attempts} attempts: {type(cause).__name__}: {str(cause)[:200]}"
        )


@functools.lru_cache(maxsize=64)
def _json_schema(response_model: type[BaseModel]) -> dict:
    # building a JSON schema costs milliseconds of CPU: once per response model, not once per call
    # (read only: the cache key hashes it; the same dict as before, so stored answers keep their keys)
    return response_model.model_json_schema()


class RoleClient:
    """One role's structured-output client with retries, cache and accounting."""

    def __init__(
        self, role: str, endpoint: RoleEndpoint, cache: ResponseCache, ledger: UsageLedger, concurrency: int = 4
    ):
        self.role = role
        self.endpoint = endpoint
        self.cache = cache
        self.ledger = ledger
        self._limit = threading.Semaphore(concurrency)
        self._client = None

    def require_api_key(self) -> str:
        """The role's API key from its environment variable; a clear error naming the variable (never
        the key) when it is missing, so a run fails at once instead of writing an empty version."""
        api_key = os.environ.get(self.endpoint.api_key_env)
        if not api_key:
            raise InputError(
                f"teachers ({self.role})", "api_key_env", f"environment variable {self.endpoint.api_key_env} is not set"
            )
        return api_key

    def _instructor(self):
        if self._client is None:
            api_key = self.require_api_key()
            raw = openai.OpenAI(
                base_url=self.endpoint.base_url, api_key=api_key, timeout=self.endpoint.timeout_s, max_retries=0
            )
            self._client = instructor.from_openai(raw, mode=instructor.Mode.JSON)
            # a re-ask: instructor could not parse or validate the answer and asks again
            self._client.on("parse:error", lambda *args, **kwargs: self.ledger.count(self.role, "reasks"))
        return self._client

    def cache_key(self, messages: list[dict], response_model: type[BaseModel]) -> str:
        return content_hash(
            {
                "role": self.role,
                "model": self.endpoint.model,
                "messages": messages,
                "schema": _json_schema(response_model),
            }
        )

    def complete(self, messages: list[dict], response_model: type[T]) -> T:
        key = self.cache_key(messages, response_model)
        cached = self.cache.get(key)
        if cached is not None:
            self.ledger.count(self.role, "cache_hits")
            return response_model.model_validate(cached)

        def before_retry(state) -> None:
            self.ledger.count(self.role, "retries")

        backoff = wait_exponential_jitter(initial=self.endpoint.backoff_initial_s, max=20)

        def wait(state) -> float:
            after = retry_after_seconds(state.outcome.exception() if state.outcome else None)
            return after if after is not None else backoff(state)

        attempts = self.endpoint.transport_retries + 1
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait,
            stop=stop_after_attempt(attempts),
            before_sleep=before_retry,
            reraise=True,
        )
        with self._limit:
            try:
                result, completion = retrying(
                    self._instructor().chat.completions.create_with_completion,
                    model=self.endpoint.model,
                    messages=messages,
                    response_model=response_model,
                    max_retries=self.endpoint.validation_retries,
                    temperature=self.endpoint.temperature,
                    max_tokens=self.endpoint.max_tokens,
                )
            except Exception as exc:
                if is_transient(exc):
                    raise TeacherUnavailable(self.role, self.endpoint, attempts, exc) from exc
                raise
        self.ledger.record(self.role, self.endpoint, getattr(completion, "usage", None))
        self.cache.put(key, result.model_dump(mode="json"))
        return result


# --- response schemas ---------------------------------------------------------------------------


class DossierDraft(BaseModel):
    traits: list[CitedEntry] = Field(default_factory=list)
    weaknesses: list[CitedEntry] = Field(default_factory=list)
    speech_style: list[CitedEntry] = Field(default_factory=list)
    taboos: list[CitedEntry] = Field(default_factory=list)
    facts: list[CitedEntry] = Field(default_factory=list)


class EncounterProposals(BaseModel):
    encounters: list[Encounter]


class TrajectoryDraft(BaseModel):
    steps: list[TrajectoryStep] = Field(min_length=3)
    citations: list[str] = Field(default_factory=list, description="lore document ids relied on")
    rule_ids: list[str] = Field(default_factory=list, description="ids of the rules applied")


class DirectorChoice(BaseModel):
    chosen: int = Field(ge=0, description="index of the proposal to keep")
    steps: list[TrajectoryStep] | None = Field(default=None, description="edited steps, or null to keep as is")


STEP_FORMAT = (
    "Write the trajectory as steps. Titles, in order: ASSESS (the situation), RECALL LORE (quote the "
    "dossier as '<document id>: <entry>'), APPLY RULE ('<rule id> (priority N): <effect>.'), DECIDE "
    "(exactly 'ACTION: <action id>'), SPEAK (exactly 'SAY: \"<the line>\"'). Each step has a short "
    "inner monologue in 'thought' and a one-line 'action'."
)


def _dossier_text(dossier: Dossier) -> str:
    return "\n".join(f"- [{section}] {entry.source}: {entry.text}" for section, entry in dossier.entries())


class LLMLoremaster:
    """Consolidates a species' lore into a dossier. An entry is kept only with a citation of one of the
    species' documents and words that pass the text screen; the others are dropped and counted by reason
    (`dropped`, shown in the `expert_trajectories` metadata)."""

    def __init__(self, client: RoleClient):
        self.client = client
        self.dropped: Counter[str] = Counter()

    def consolidate(self, lore: SpeciesLore) -> Dossier:
        documents = "\n\n".join(f"## {d.doc_id} — {d.title}\n{d.body}" for d in lore.documents)
        draft = self.client.complete(
            [
                {
                    "role": "system",
                    "content": "You are the loremaster of a dark-fantasy game. Consolidate the lore "
                    "of one species into a dossier. Every entry cites the id of the document it comes from.",
                },
                {"role": "user", "content": f"Species: {lore.species}\n\n{documents}"},
            ],
            DossierDraft,
        )
        known = set(lore.document_ids)

        def kept(entry: CitedEntry) -> bool:
            reason = "uncited" if entry.source not in known else "reads_as_instructions" if screen(entry.text) else None
            if reason:
                self.dropped[reason] += 1
            return reason is None

        sections = {
            name: tuple(e for e in getattr(draft, name) if kept(e))
            for name in ("traits", "weaknesses", "speech_style", "taboos", "facts")
        }
        return Dossier(species=lore.species, documents=lore.dossier.documents, **sections)


class LLMDesigner:
    """Proposes encounters; the stratified designer keeps those that fit the balance, and fills the rest
    (rules left under-covered, splits below size) by targeted sampling with near-misses."""

    def __init__(self, client: RoleClient, proposals: int = 12, seed: int = 0):
        self.client = client
        self.proposals = proposals
        self.seed = seed
        self.refused = 0  # proposals of the last design left out: another species, or words that talk to a model

    def design(
        self,
        rulebook: Rulebook,
        live_state: GameState,
        spec: DesignSpec,
        mined: list[Encounter],
        went_wrong: frozenset[str] = frozenset(),
    ) -> EncounterSet:
        rules = "\n".join(f"- {r.id}: {r.description}" for r in rulebook.rules)
        drafts = self.client.complete(
            [
                {
                    "role": "system",
                    "content": "You are the game designer. Propose varied, playable encounters "
                    "for one monster species that together exercise every rule.",
                },
                {
                    "role": "user",
                    "content": f"Species: {rulebook.species}\nLive game state: {live_state.model_dump_json()}\n"
                    f"Rules:\n{rules}\nPropose {self.proposals} encounters.",
                },
            ],
            EncounterProposals,
        )
        # validated as every encounter is (the schema, by instructor), of this species, and with player words that
        # describe the game (they reach the writer's and the policy's prompts); then the same balance as the
        # programmatic designer's, which fills what the proposals leave
        proposed = [
            e
            for e in drafts.encounters
            if e.npc.species == rulebook.species and not (e.player.utterance and screen(e.player.utterance))
        ]
        self.refused = len(drafts.encounters) - len(proposed)
        return EncounterDesigner(rulebook, live_state, seed=self.seed).design(
            spec, mined=mined, went_wrong=went_wrong, proposed=proposed
        )


class LLMWriter:
    def __init__(self, client: RoleClient, name: str | None = None):
        self.client = client
        self.name = name or f"openai:{client.endpoint.model}"  # a panel member's own name, where it has one

    def write(self, encounter: Encounter, brief: Brief, variant: int = 0) -> Trajectory:
        draft = self.client.complete(
            [
                {
                    "role": "system",
                    "content": f"You are the trajectory writer. You play a {brief.species} and think "
                    f"step by step before acting, true to its lore and bound by its rules. {STEP_FORMAT}",
                },
                {
                    "role": "user",
                    "content": f"Encounter:\n{describe_encounter(encounter)}\n\nDossier:\n"
                    f"{_dossier_text(brief.dossier)}\n\n{brief.recalled_text()}Rules that apply:\n"
                    f"{brief.rules_summary()}\n\nVariant {variant}.",
                },
            ],
            TrajectoryDraft,
        )
        return Trajectory(
            encounter_id=encounter.encounter_id,
            species=encounter.species,
            steps=tuple(draft.steps),
            citations=tuple(draft.citations),
            rule_ids=tuple(draft.rule_ids),
            teacher=self.name,
        )


class LLMReviewer:
    QUESTIONS = {
        "lore": "Is every recalled fact faithful to the dossier?",
        "character": "Does the monster think and speak in character for its species?",
        "rules": "Does the decision respect every rule that applies?",
    }

    def __init__(self, client: RoleClient, aspect: ReviewAspect, name: str | None = None):
        self.client = client
        self.aspect = aspect
        self.name = name or f"openai:{client.endpoint.model}"

    def review(self, trajectory: Trajectory, encounter: Encounter, brief: Brief) -> Review:
        review = self.client.complete(
            [
                {
                    "role": "system",
                    "content": f"You are a strict reviewer. {self.QUESTIONS[self.aspect]} "
                    f"Answer with aspect '{self.aspect}', approved true/false and a list of concrete issues.",
                },
                {
                    "role": "user",
                    "content": f"Encounter:\n{describe_encounter(encounter)}\n\nDossier:\n"
                    f"{_dossier_text(brief.dossier)}\n\n{brief.recalled_text()}Rules:\n{brief.rules_summary()}\n\n"
                    f"Trajectory:\n{trajectory.render()}",
                },
            ],
            Review,
        )
        return review.model_copy(update={"aspect": self.aspect})


class LLMDirector:
    def __init__(self, client: RoleClient):
        self.client = client

    def direct(
        self, encounter: Encounter, brief: Brief, proposals: list[Trajectory], reviews: list[list[Review]]
    ) -> Trajectory:
        listing = "\n\n".join(
            f"### Proposal {i}\n{p.render()}\nReviews: "
            + "; ".join(f"{r.aspect}: {'ok' if r.approved else ', '.join(r.issues)}" for r in rs)
            for i, (p, rs) in enumerate(zip(proposals, reviews))
        )
        choice = self.client.complete(
            [
                {
                    "role": "system",
                    "content": "You are the director. Keep the best proposal, fixing what the "
                    f"reviewers found if needed. {STEP_FORMAT}",
                },
                {"role": "user", "content": f"Encounter:\n{describe_encounter(encounter)}\n\n{listing}"},
            ],
            DirectorChoice,
        )
        base = proposals[min(choice.chosen, len(proposals) - 1)]
        update = {"teacher": f"{base.teacher}+director"}
        if choice.steps:
            update["steps"] = tuple(choice.steps)
        return base.model_copy(update=update)
