"""A local OpenAI-compatible server for every blue adapter: `POST /v1/chat/completions` (streaming or
not) and `GET /v1/models`.

- Model names: `vampire` (Tier 1 species adapter), `vampire@tier2`, `vampire/count_orlok` (Tier 3).
- The game sends the encounter as an extra body field (`extra_body={"encounter": {...}}` with the
  `openai` client); without one, the live game state and a player who talks are assumed. The last
  user message is what the player says.
- The answer streams as it is generated: the monster's thinking as `reasoning_content` deltas (for
  the game's logs, not the player), then `ACTION: ...` / `SAY: "..."` as `content`, released a
  line at a time after the guardrails checked everything said so far. A violating answer is
  replaced by a safe in-character one (the rules engine's decision with an expert line) and logged.
- Every request/answer is appended to the player logs (`served-<date>.jsonl`), so live play flows
  back into training through the player-log sensor.
- `POST /v1/feedback` lets the game report how the encounter went after an answer, keyed by the
  response id it was given: an outcome label of the species' closed set (`outcomes` in the rule
  files) and an optional rating of the line. It is validated, screened like utterances and appended
  to the same logs; answers that went wrong are learned again, lines rated down never become examples.
- A watcher polls the registry's deployment log and loads or drops adapters when a promotion or a
  rollback happens (hot reload), without a restart.
- The rules hold at serve time: the action an answer names is verified by the species' rules engine in
  its encounter before any of the answer's content is released; one the rules forbid (or that ignores a
  requirement) is replaced by the engine's decision with an expert line when the tier says
  `rules_enforcement: replace`, or let through and logged under `log`; counted either way.
- `/playground`: a page for designers (`serving/playground.html`): pick a monster, set the encounter, type
  what the player says and watch the answer stream with the rules engine's verdict; blue and green side
  by side when `serve_green` also serves each slot's unpromoted candidate (as `<model>:green`).
- Production limits: an optional API key (`Authorization: Bearer`, every route but `/health`), a request
  size limit, bounded `max_tokens` and `temperature` (a 400 naming the field), a per-request time limit
  after which the answer ends with the engine's decision, and Prometheus metrics at `/metrics`
  (`serving/metrics.py`).
"""

from __future__ import annotations

import hmac
import json
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

from fastapi import Request  # at module level: FastAPI resolves the endpoint's (postponed) annotation here
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from serving.engine import open_engine
from serving.engine_protocol import ServedAdapter, ServingEngine, StreamStats
from serving.metrics import UNKNOWN_MODEL, ServerMetrics
from srl_forge.artifacts import open_artifact_store
from srl_forge.deployment import load_tiers, served_name
from srl_forge.encounter import (
    FACTIONS,
    PLAYER_ITEMS,
    Encounter,
    Location,
    LocationKind,
    MoonPhase,
    NPCState,
    Player,
    PlayerAction,
    TimeOfDay,
    Weather,
)
from srl_forge.errors import InputError
from srl_forge.game_state import GameStateStore
from srl_forge.guardrails import check as guardrail_violations
from srl_forge.guardrails import player_disclosure
from srl_forge.lore import DEFAULT_LORE_LIMITS, LoreLimits, load_species_lore
from srl_forge.personas import load_persona
from srl_forge.player_logs import (
    Feedback,
    FeedbackRecord,
    PlayerLogRecord,
    RulesVerdict,
    ServedInfo,
    append_player_log,
    find_served_answer,
    text_refusal,
)
from srl_forge.policy import (
    DECISION_TOKENS,
    ThinkingStream,
    action_in,
    parse_decision,
    render_said,
    rlvr_prompt,
)
from srl_forge.registry import open_registry
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.lines import compose_line, load_voice, step_back_line

log = logging.getLogger("serving")
TIER_NUMBER = {"tier1": 1, "tier2": 2, "tier3": 3}
GREEN_SUFFIX = ":green"
PLAYGROUND_PAGE = Path(__file__).with_name("playground.html")
MAX_FEEDBACK_BYTES = 4096  # one label, a rating and a short comment: anything longer is not feedback
RECENT_ANSWERS = 50_000  # response ids remembered in memory; older ones are found in the logs


class FeedbackError(Exception):
    """Feedback refused: `status` is the HTTP code (404 unknown answer, 413 too large, 422 invalid)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class FeedbackRequest(Feedback):
    """The feedback and the response id of the answer it is about."""

    response_id: str


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True)
    registry: str  # DuckDB file or postgresql:// URL
    artifacts_root: str  # a local folder or s3://bucket/prefix
    artifacts_cache: str | None = None  # where adapters from S3 are downloaded
    player_logs_root: str
    game_state_db: str
    lore_root: str
    lore_limits: LoreLimits = DEFAULT_LORE_LIMITS
    rules_root: str
    voices_root: str
    tiers_file: str
    model_cache: str
    reload_seconds: float = 2.0
    max_new_tokens: int = DECISION_TOKENS
    threads: int | None = None
    prefix_cache_size: int = 64  # system-prompt KV caches kept (one per served model); 0 turns caching off
    engine: str = "auto"  # auto | llama.cpp | transformers (see serving/engine.py)
    precision: str | None = None  # float32 | int8 over the tiers' `precision.embedded`; None: the tiers'
    api_key: SecretStr | None = None  # set: every route but /health needs `Authorization: Bearer <key>`
    max_request_bytes: int = Field(65_536, gt=0)  # a chat request's body: messages and an encounter
    max_tokens_limit: int | None = Field(None, gt=0)  # the most a request may ask for; unset: 2 x max_new_tokens
    request_timeout_seconds: float = Field(30.0, gt=0)  # generation stops here; the engine's decision is said
    serve_green: bool = False  # also serve each slot's unpromoted candidate as `<model>:green` (the playground)

    @property
    def tokens_limit(self) -> int:
        return self.max_tokens_limit or 2 * self.max_new_tokens


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(0.0, ge=0.0, le=2.0)
    user: str | None = None
    encounter: dict | None = None


class Monster:
    """What the server knows of one served model: its species' rules, voice and (Tier 3) persona."""

    def __init__(self, config: ServingConfig, adapter: ServedAdapter, rules_enforcement: str = "replace"):
        self.adapter = adapter
        self.rules_enforcement = rules_enforcement
        species, _, npc = adapter.target.partition("/")
        self.species, self.npc = species, npc or None
        lore = load_species_lore(Path(config.lore_root), species, config.lore_limits)
        self.engine = RulesEngine(load_rulebook(Path(config.rules_root), species, lore.document_ids))
        self.voice = load_voice(Path(config.voices_root), self.engine.rulebook)
        self.persona = (
            load_persona(Path(config.lore_root), species, self.npc, self.engine.vocabulary, config.lore_limits)
            if self.npc
            else None
        )
        if self.persona and self.persona.header.address:
            self.voice = self.voice.model_copy(update={"address": self.persona.header.address})

    def safe_answer(self, encounter: Encounter) -> tuple[str, str]:
        """The rules engine's decision with an expert line: what a violating answer is replaced by."""

        decision = self.engine.decide(encounter)
        allowed = [a for a in decision.acceptable if not self.persona or a not in self.persona.header.forbid]
        action = (
            allowed[0] if allowed else (decision.acceptable[0] if decision.acceptable else self.engine.vocabulary[0])
        )
        markers = decision.dialogue.voice_markers()
        line = compose_line(
            self.voice, encounter, action, decision.dialogue, random.Random(encounter.encounter_id), markers
        )
        return action, line

    def verdict(self, encounter: Encounter, action: str) -> RulesVerdict:
        """The rules engine's verdict on the action a model chose in this encounter (a persona's own
        forbidden actions included), and what this monster's tier does when it fails."""
        reasons = list(self.engine.verify(encounter, action).reasons)
        if self.persona and action in self.persona.header.forbid:
            reasons.append((f"persona:{self.persona.npc}", f"{self.persona.header.name} never does {action}"))
        return RulesVerdict(
            model_action=action,
            passed=not reasons,
            rule_ids=tuple(rule_id for rule_id, _ in reasons),
            reasons=tuple(reason for _, reason in reasons),
            enforcement=self.rules_enforcement,
        )

    def step_back_answer(self, encounter: Encounter) -> tuple[str, str]:
        """The answer to a player who may be at risk for real: a calm action (watching, else leaving) whatever
        the rules would have the monster do, and the voice's step-back line."""
        vocabulary = self.engine.vocabulary
        action = next((a for a in ("observe", "flee") if a in vocabulary), vocabulary[0])
        return action, step_back_line(self.voice, encounter, random.Random(encounter.encounter_id))


WITHHELD_UTTERANCE = "[withheld: player disclosure]"


class AnswerGuard:
    """Decides what of a streamed answer may reach the game: the thinking streams as it comes (for logs, not
    the player) and `ACTION`/`SAY` content a whole line at a time (`policy.ThinkingStream`). Content is held
    until the answer names its action and `verdict_of(action)` (the rules engine) has passed it; `ACTION`
    comes first in the grammar, so a good answer waits for nothing. The first guardrail violation anywhere,
    or an action the rules refuse under `replace`, stops the answer; a stopped, unreadable, timed-out
    or failed answer ends with the safe one instead."""

    def __init__(self, verdict_of=None):
        self.stream = ThinkingStream()
        self.verdict_of = verdict_of  # action -> RulesVerdict; None: no rules check
        self.replaced: tuple[str, ...] = ()  # guardrail categories
        self.rules: RulesVerdict | None = None
        self.action: str | None = None  # the first action the answer named
        self.held: list[str] = []  # content lines waiting for the action's verdict
        self.released = ""  # content that reached the game
        self.timed_out = False
        self.engine_error: str | None = None  # what the engine raised mid-answer
        self.decision: tuple[str, str] | None = None

    @property
    def text(self) -> str:
        return self.stream.text

    @property
    def stopped(self) -> bool:
        """Nothing more of the model's answer may be used: the guardrails or the rules refused it."""
        return bool(self.replaced) or (self.rules is not None and self.rules.replaced)

    def feed(self, piece: str) -> list[tuple[str, str]]:
        violations = guardrail_violations(self.stream.text + piece)
        if violations:
            self.stream.text += piece
            self.replaced = tuple(sorted({v.category for v in violations}))
            return []
        out = []
        for kind, text in self.stream.feed(piece):
            out.extend([(kind, text)] if kind == "reasoning" else self._release(text))
            if self.stopped:
                break
        return out

    def _release(self, line: str) -> list[tuple[str, str]]:
        if self.action is None:
            action = action_in(line)
            if action is None:
                self.held.append(line)
                return []
            self.action = action
            if self.verdict_of is not None:
                self.rules = self.verdict_of(action)
                if self.rules.replaced:
                    self.held.clear()
                    return []
            lines, self.held = [*self.held, line], []
        else:
            lines = [line]
        self.released += "".join(lines)
        return [("content", text) for text in lines]

    def finish(self, safe_answer) -> tuple[list[tuple[str, str]], str | None, str | None]:
        """The last content events and the (action, line) that was said. `safe_answer() -> (action, line)`."""
        rest = self.stream.rest()
        events = self._release(rest) if rest.strip() and not self.stopped else []
        self.decision = None if self.stopped else parse_decision(self.stream.text)
        if self.decision is not None and self.action is not None:
            return events, *self.decision
        safe_action, line = safe_answer()
        said = action_in(self.released)
        ending = ("content", render_said(said or safe_action, line, said is not None))
        return [*events, ending], said or safe_action, line


class ForgeServer:
    def __init__(self, config: ServingConfig, pool: ServingEngine | None = None):
        self.config = config
        self.tiers = load_tiers(Path(config.tiers_file))
        self.store = open_artifact_store(config.artifacts_root, config.artifacts_cache)
        self.registry = open_registry(config.registry)
        self.game_state = GameStateStore(config.game_state_db)
        bases = {t.base_model for t in self.tiers.values()}
        if len(bases) != 1:
            # One process serves one base model; production tiers with their own bases are vLLM servers.
            raise InputError(
                config.tiers_file,
                "tiers.*.base_model",
                f"the local server serves one base model; these tiers use {sorted(bases)}",
            )
        self.base_model = bases.pop()
        precisions = {t.embedded_precision for t in self.tiers.values()}
        if config.precision is None and len(precisions) != 1:
            raise InputError(
                config.tiers_file,
                "tiers.*.precision.embedded",
                f"the local server serves one base model at one precision; these tiers use {sorted(precisions)}",
            )
        self.precision = config.precision or precisions.pop()
        self.pool = pool or open_engine(
            config.engine,
            self.base_model,
            config.model_cache,
            config.threads,
            config.prefix_cache_size,
            self.precision,
        )
        self.monsters: dict[str, Monster] = {}
        self.metrics = ServerMetrics()
        self.recent: OrderedDict[str, str] = OrderedDict()  # response id -> species, newest last
        self._recent_lock = threading.Lock()
        self.log_position = -1
        self._stop = threading.Event()
        self.reload()

    # --- hot reload ---------------------------------------------------------------------------

    def wanted(self) -> list[ServedAdapter]:
        slots = [("blue", slot) for slot in self.registry.blue_slots()]
        if self.config.serve_green:
            blue_names = {served_name(target, tier) for _, (target, tier, _) in slots}
            slots += [("green", slot) for slot in self.registry.green_slots() if served_name(*slot[:2]) in blue_names]
        out = []
        for color, (target, tier, adapter) in slots:
            if tier not in self.tiers or adapter.base_model != self.base_model:
                continue
            out.append(
                ServedAdapter(
                    name=served_name(target, tier) + (GREEN_SUFFIX if color == "green" else ""),
                    target=target,
                    tier=tier,
                    version=adapter.version,
                    path=str(self.store.local_path(adapter.adapter_uri)),
                    slot=color,
                )
            )
        return out

    def reload(self) -> dict | None:
        position = self.registry.log_position()
        if position == self.log_position:
            return None
        wanted = self.wanted()
        changes = self.pool.sync(wanted)
        self.monsters = {
            a.name: self.monsters[a.name]
            if a.name in self.monsters and self.monsters[a.name].adapter == a
            else Monster(self.config, a, self.tiers[a.tier].rules_enforcement)
            for a in wanted
        }
        self.metrics.served_models.set(len(self.monsters))
        self.log_position = position
        for name in changes["added"]:  # the first request to a new adapter should not pay for its system prompt
            monster = self.monsters[name]
            self.pool.warm(name, self.prompt_for(monster, self.idle_encounter(monster)))
        if changes["added"] or changes["removed"]:
            log.info(f"serving {sorted(self.monsters)}; loaded {changes['added']}, dropped {changes['removed']}")
        return changes

    def watch(self) -> threading.Thread:
        def loop():
            while not self._stop.wait(self.config.reload_seconds):
                try:
                    self.reload()
                except Exception as exc:  # a busy or briefly locked registry: try again next tick
                    log.warning(f"registry reload failed, retrying: {exc}")

        thread = threading.Thread(target=loop, name="registry-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    # --- requests -----------------------------------------------------------------------------

    def idle_encounter(self, monster: Monster) -> Encounter:
        """A player walking up to talk, in the game's current state: for requests that bring no encounter."""
        return Encounter(
            game=self.game_state.current(),
            npc=NPCState(species=monster.species, tier=TIER_NUMBER[monster.adapter.tier]),
            player=Player(action="talk"),
            location=Location(),
        )

    def encounter_for(self, monster: Monster, request: ChatRequest) -> Encounter:
        said = next((m.get("content") or "" for m in reversed(request.messages) if m.get("role") == "user"), "")
        if isinstance(said, list):  # content parts
            said = " ".join(p.get("text", "") for p in said if isinstance(p, dict))
        said = str(said)[:500]
        if request.encounter is not None:
            try:
                encounter = Encounter.model_validate(request.encounter)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ValueError(f"request field 'encounter.{'.'.join(map(str, err['loc']))}': {err['msg']}") from exc
            if encounter.species != monster.species:
                raise ValueError(
                    f"encounter.npc.species is {encounter.species!r}, the model {request.model!r} "
                    f"is a {monster.species}"
                )
        else:
            encounter = self.idle_encounter(monster)
        return encounter.model_copy(update={"player": encounter.player.model_copy(update={"utterance": said})})

    def prompt_for(self, monster: Monster, encounter: Encounter) -> list[dict]:
        return rlvr_prompt(
            encounter, monster.engine.vocabulary, monster.persona.introduction() if monster.persona else None
        )

    def answer_events(self, request: ChatRequest, response_id: str | None = None):
        """Yields ("reasoning" | "content", text) pieces and finally ("done", record)."""
        monster = self.monsters.get(request.model)
        if monster is None:
            raise KeyError(request.model)
        asked = request.max_completion_tokens or request.max_tokens
        if asked is not None and asked > self.config.tokens_limit:
            field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            raise ValueError(f"request field '{field}': at most {self.config.tokens_limit} (asked {asked})")
        encounter = self.encounter_for(monster, request)
        stats = StreamStats()
        max_tokens = asked or self.config.max_new_tokens
        deadline = time.monotonic() + self.config.request_timeout_seconds
        guard = AnswerGuard(lambda action: monster.verdict(encounter, action))
        disclosure = player_disclosure(encounter.player.utterance)
        if disclosure:  # a real person may be at risk: no model, no menace, and the words are not kept
            action, line = monster.step_back_answer(encounter)
            yield "content", render_said(action, line, False)
            log.warning(
                f"{request.model}: player disclosure ({disclosure}) in answer {response_id}: answered with the "
                "step-back line; the words are withheld from the logs, route the id to the studio's safety process"
            )
            player = encounter.player.model_copy(update={"utterance": WITHHELD_UTTERANCE})
            encounter = encounter.model_copy(update={"player": player})
            replaced, decision = (), (action, line)
        else:
            pieces = self.pool.stream(
                request.model, self.prompt_for(monster, encounter), max_tokens, request.temperature or 0.0, stats
            )
            try:
                for piece in pieces:  # "" while the engine waits: the time limit holds before the first token too
                    if piece:
                        yield from guard.feed(piece)
                    if guard.stopped or time.monotonic() > deadline:
                        guard.timed_out = not guard.stopped
                        break
            except Exception as exc:  # the player still gets an answer: the rules engine's decision, as on a timeout
                guard.engine_error = f"{type(exc).__name__}: {exc}"
            finally:
                pieces.close()  # the engine stops generating (and frees its lock) now, not when collected
                stats.finished = stats.finished or time.perf_counter()
            events, action, line = guard.finish(lambda: monster.safe_answer(encounter))
            self._log_refusals(request.model, response_id, guard)
            yield from events
            replaced, decision = guard.replaced, guard.decision
        record = PlayerLogRecord(
            timestamp=datetime.now(UTC),
            species=monster.species,
            player_id=request.user or "anonymous",
            encounter=encounter,
            npc_action=action,
            npc_line=line,
            npc=monster.npc,
            served=ServedInfo(
                model=request.model,
                tier=monster.adapter.tier,
                adapter_version=monster.adapter.version,
                ttft_ms=stats.ttft_ms,
                total_ms=stats.total_ms,
                tokens_per_second=stats.tokens_per_second,
                cached_prompt_tokens=stats.cached_prompt_tokens,
                format_ok=decision is not None,
                guardrail_categories=replaced,
                disclosure=disclosure,
                rules=None if disclosure else guard.rules,
                timed_out=guard.timed_out,
                engine_error=guard.engine_error,
                generated_tokens=stats.tokens,
            ),
            response_id=response_id,
        )
        append_player_log(self.config.player_logs_root, record)
        self.metrics.answered(record)
        if response_id:
            with self._recent_lock:
                self.recent[response_id] = monster.species
                while len(self.recent) > RECENT_ANSWERS:
                    self.recent.popitem(last=False)
        yield "done", (record, self.summary(monster, record))

    def summary(self, monster: Monster, record: PlayerLogRecord) -> dict:
        """What a game or a designer needs beyond the text: the decision, how it was served, and the rules
        engine's verdict on the action that was said (and what its dialogue constraints find in the line), with
        every rule that fired in this encounter."""
        verification = monster.engine.verify(record.encounter, record.npc_action)
        decision = verification.decision
        return {
            "action": record.npc_action,
            "line": record.npc_line,
            "model": record.served.model,
            "tier": record.served.tier,
            "slot": monster.adapter.slot,
            "adapter_version": record.served.adapter_version,
            "ttft_ms": record.served.ttft_ms,
            "guardrail_replaced": bool(record.served.guardrail_categories),
            "disclosure": record.served.disclosure,  # for the studio's safety process
            "timed_out": record.served.timed_out,
            "engine_error": record.served.engine_error,
            "rules": record.served.rules.model_dump(mode="json") if record.served.rules else None,
            "verdict": {
                "action": record.npc_action,
                "passed": verification.passed,
                "reasons": [{"rule_id": rule_id, "reason": reason} for rule_id, reason in verification.reasons],
                "line_problems": [
                    {"rule_id": rule_id, "reason": reason}
                    for rule_id, reason in decision.dialogue.check(record.npc_line)
                ],
                "acceptable": list(decision.acceptable),
                "fired": [
                    {
                        "rule_id": entry.rule_id,
                        "status": entry.status,
                        "effect": entry.effect,
                        "description": monster.engine.rulebook.rule(entry.rule_id).description,
                    }
                    for entry in decision.trace
                ],
            },
        }

    def playground_options(self) -> dict:
        """What the playground's form offers: the served monsters (blue, with green beside when served) and
        every encounter field's values, with the live game state as the starting point."""
        models = []
        for name, monster in sorted(self.monsters.items()):
            if monster.adapter.slot != "blue":
                continue
            green = self.monsters.get(name + GREEN_SUFFIX)
            models.append(
                {
                    "id": name,
                    "species": monster.species,
                    "npc": monster.npc,
                    "tier": monster.adapter.tier,
                    "adapter_version": monster.adapter.version,
                    "green": {"id": name + GREEN_SUFFIX, "adapter_version": green.adapter.version} if green else None,
                    "actions": list(monster.engine.vocabulary),
                    "live_events": list(monster.engine.rulebook.known_events),
                }
            )
        return {
            "models": models,
            "fields": {
                "time_of_day": list(get_args(TimeOfDay)),
                "moon_phase": list(get_args(MoonPhase)),
                "weather": list(get_args(Weather)),
                "player_action": list(get_args(PlayerAction)),
                "location_kind": list(get_args(LocationKind)),
                "items": list(PLAYER_ITEMS),
                "factions": list(FACTIONS),
            },
            "current": self.game_state.current().model_dump(mode="json"),
            "defaults": Encounter(
                game=self.game_state.current(), npc=NPCState(species="vampire"), player=Player(), location=Location()
            ).model_dump(mode="json", exclude={"game"}),
        }

    def _log_refusals(self, model: str, response_id: str | None, guard: AnswerGuard) -> None:
        if guard.replaced:
            categories = ", ".join(guard.replaced)
            log.warning(f"{model}: answer {response_id} replaced by a safe one (guardrails: {categories})")
        rules = guard.rules
        if rules is not None and not rules.passed:
            done = "replaced by the engine's decision" if rules.replaced else "let through (rules_enforcement: log)"
            log.warning(
                f"{model}: answer {response_id} names {rules.model_action!r}, which the rules refuse here "
                f"({'; '.join(rules.reasons)}): {done}"
            )
        if guard.timed_out:
            log.warning(
                f"{model}: answer {response_id} stopped at the {self.config.request_timeout_seconds:g} s time limit"
            )
        if guard.engine_error:
            log.error(f"{model}: the engine failed in answer {response_id} ({guard.engine_error}): the rules decided")

    # --- feedback -----------------------------------------------------------------------------

    def species_of_answer(self, response_id: str) -> str | None:
        with self._recent_lock:
            species = self.recent.get(response_id)
        if species is not None:
            return species
        for species in sorted({m.species for m in self.monsters.values()}):  # an answer before a restart
            if find_served_answer(self.config.player_logs_root, species, response_id) is not None:
                return species
        return None

    def outcomes_of(self, species: str) -> dict[str, str]:
        monster = next((m for m in self.monsters.values() if m.species == species), None)
        rulebook = monster.engine.rulebook if monster else load_rulebook(Path(self.config.rules_root), species)
        return rulebook.outcomes

    def record_feedback(self, body: bytes) -> tuple[FeedbackRecord, str | None]:
        """Validate, screen and append the game's feedback on an answer; the record and its outcome's verdict.
        Raises FeedbackError and stores nothing when any part is refused."""
        if len(body) > MAX_FEEDBACK_BYTES:
            raise FeedbackError(413, f"feedback is {len(body)} bytes; at most {MAX_FEEDBACK_BYTES}")
        try:
            request = FeedbackRequest.model_validate(json.loads(body or b"null"))
            feedback = Feedback.model_validate(request.model_dump(exclude={"response_id"}))
        except json.JSONDecodeError as exc:
            raise FeedbackError(422, f"feedback is not JSON: {exc.msg}") from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(map(str, err["loc"])) or "body"
            raise FeedbackError(422, f"feedback field '{field}': {err['msg']}") from exc
        if feedback.outcome is None and feedback.rating is None:
            raise FeedbackError(422, "feedback needs an 'outcome' or a 'rating'")
        species = self.species_of_answer(request.response_id)
        if species is None:
            raise FeedbackError(404, f"no served answer has the id {request.response_id!r}")
        try:
            outcomes = self.outcomes_of(species)
        except InputError as exc:  # the species is no longer served and its rule file is broken
            raise FeedbackError(503, f"the {species} outcomes cannot be read: {exc}") from exc
        if feedback.outcome is not None and feedback.outcome not in outcomes:
            known = ", ".join(outcomes)
            problem = f"{feedback.outcome!r} is not a {species} outcome ({known})"
            raise FeedbackError(422, f"feedback field 'outcome': {problem}")
        refusal = text_refusal(feedback.comment) if feedback.comment else None
        if refusal:
            raise FeedbackError(422, f"feedback field 'comment' refused: {refusal}")
        record = FeedbackRecord(
            timestamp=datetime.now(UTC), species=species, response_id=request.response_id, feedback=feedback
        )
        append_player_log(self.config.player_logs_root, record)
        return record, outcomes.get(feedback.outcome or "")


OPEN_PATHS = frozenset({"/health", "/playground"})  # a load balancer's probe; the page (it asks for the key)


async def limited_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    from fastapi import HTTPException

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body is {declared} bytes; at most {limit}")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise HTTPException(413, f"request body passes {limit} bytes")
    return bytes(body)


def authorized(request: Request, key: SecretStr) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.get_secret_value().encode())


def build_app(server: ForgeServer):
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="srl-forge monsters", version="1")

    @app.middleware("http")
    async def require_api_key(request: Request, call_next):
        key = server.config.api_key
        if key is not None and request.url.path not in OPEN_PATHS and not authorized(request, key):
            server.metrics.refused(UNKNOWN_MODEL, 401)
            return JSONResponse(
                {"detail": "an API key is required: send `Authorization: Bearer <key>`"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)

    @app.get("/playground")
    def playground():
        return HTMLResponse(PLAYGROUND_PAGE.read_text(encoding="utf-8"))

    @app.get("/playground/options")
    def playground_options():
        return server.playground_options()

    @app.get("/metrics")
    def metrics():
        data, content_type = server.metrics.exposition()
        return Response(data, media_type=content_type)

    @app.get("/health")
    def health():
        return {
            "status": "ok",
            "models": sorted(server.monsters),
            "registry_position": server.log_position,
            "engine": server.pool.name,
            "precision": server.precision,
        }

    @app.get("/v1/models")
    def models():
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "owned_by": "srl-forge",
                    "tier": m.adapter.tier,
                    "adapter_version": m.adapter.version,
                }
                for name, m in sorted(server.monsters.items())
            ],
        }

    def refuse(status: int, message: str, model: str = UNKNOWN_MODEL) -> HTTPException:
        server.metrics.refused(model, status)
        return HTTPException(status, message)

    @app.post("/v1/chat/completions")
    async def chat(http_request: Request):
        try:
            body = await limited_body(http_request, server.config.max_request_bytes)
        except HTTPException as exc:
            raise refuse(exc.status_code, exc.detail) from exc
        try:
            request = ChatRequest.model_validate(json.loads(body or b"null"))
        except json.JSONDecodeError as exc:
            raise refuse(400, f"request body is not JSON: {exc.msg}") from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            raise refuse(400, f"request field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}") from exc
        if request.model not in server.monsters:
            raise refuse(404, f"model {request.model!r} is not served; try one of {sorted(server.monsters)}")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"  # what the game's feedback names
        events = server.answer_events(request, completion_id)
        try:
            first = await run_in_threadpool(next, events)  # validates the encounter before any byte is sent
        except ValueError as exc:
            raise refuse(400, str(exc), request.model) from exc
        created = int(time.time())

        def chunk(delta: ChoiceDelta, finish: str | None = None, summary: dict | None = None) -> str:
            """One server-sent event: the OpenAI client's own chunk type, so a client parses what it expects;
            the last one also carries the answer's summary (`srl_forge`, as in a whole completion)."""
            event = ChatCompletionChunk(
                id=completion_id,
                object="chat.completion.chunk",
                created=created,
                model=request.model,
                choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
                **({"srl_forge": summary} if summary is not None else {}),
            )
            return f"data: {event.model_dump_json(exclude_unset=True)}\n\n"

        def all_events():
            yield first
            yield from events

        if request.stream:

            def sse():
                yield chunk(ChoiceDelta(role="assistant", content=""))
                summary = None
                for kind, value in all_events():
                    if kind == "reasoning":
                        yield chunk(ChoiceDelta(reasoning_content=value))  # the field vLLM and llama.cpp stream
                    elif kind == "content":
                        yield chunk(ChoiceDelta(content=value))
                    else:
                        summary = value[1]
                yield chunk(ChoiceDelta(), "stop", summary)
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")

        def collect() -> tuple[str, str, dict]:
            reasoning, content, summary = "", "", None
            for kind, value in all_events():
                if kind == "reasoning":
                    reasoning += value
                elif kind == "content":
                    content += value
                else:
                    summary = value[1]
            return reasoning, content, summary

        reasoning, content, summary = await run_in_threadpool(collect)
        completion = ChatCompletion(
            id=completion_id,
            object="chat.completion",
            created=created,
            model=request.model,
            choices=[
                Choice(
                    index=0,
                    finish_reason="stop",
                    message=ChatCompletionMessage(
                        role="assistant", content=content.strip(), reasoning_content=reasoning.strip()
                    ),
                )
            ],
            srl_forge=summary,  # what the game needs beyond the text (ForgeServer.summary)
        )
        return JSONResponse(completion.model_dump(mode="json", exclude_unset=True))

    @app.post("/v1/feedback")
    async def feedback(http_request: Request):
        """How the encounter went after an answer: `{"response_id": "chatcmpl-...", "outcome": "<label>",
        "rating": -1 | 0 | 1, "comment": "..."}` (an outcome or a rating at least)."""
        body = await http_request.body()
        try:
            record, verdict = await run_in_threadpool(server.record_feedback, body)
        except FeedbackError as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        return {"response_id": record.response_id, "species": record.species, "recorded": True, "verdict": verdict}

    return app
