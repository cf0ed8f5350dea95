"""Historical player interactions, one record per answer or game event, and the game's feedback on served
answers. Two stores behind the same functions (append, read, watermark), chosen by the location: JSONL
files under `<folder>/<species>/*.jsonl` (embedded default; a game may also drop its own files there), or
the `player_logs` table of a PostgreSQL database (`postgresql://` URL, production).

Feedback (`POST /v1/feedback`) is appended as its own line, keyed by the response id the server returned;
reading attaches the newest feedback to the served answer it names, so the log stays append-only."""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srl_forge.artifacts import StoredArtifact
from srl_forge.databases import is_postgres, open_database, redact
from srl_forge.encounter import Encounter
from srl_forge.guardrails import check as guardrail_violations
from srl_forge.guardrails import player_disclosure
from srl_forge.hashing import content_hash
from srl_forge.rulebook import OUTCOME_LABEL
from srl_forge.species import validate_species_id
from srl_forge.text_screen import screen


class RulesVerdict(BaseModel):
    """The rules engine's verdict on the action a served model chose, and what the server did about it."""

    model_config = ConfigDict(frozen=True)
    model_action: str  # what the model said it would do
    passed: bool
    rule_ids: tuple[str, ...] = ()  # the rules (or checks) it broke
    reasons: tuple[str, ...] = ()
    enforcement: Literal["replace", "log"] = "replace"

    @property
    def replaced(self) -> bool:
        return not self.passed and self.enforcement == "replace"


class ServedInfo(BaseModel):
    """How a served answer was produced: which model and adapter, how fast, and whether the guardrails
    replaced it (the violating text itself is not kept)."""

    model_config = ConfigDict(frozen=True)
    model: str
    tier: str
    adapter_version: str | None
    ttft_ms: float | None = None
    total_ms: float | None = None
    tokens_per_second: float | None = None
    cached_prompt_tokens: int = 0  # prompt tokens served from the system-prompt cache
    generated_tokens: int = 0
    format_ok: bool = True
    guardrail_categories: tuple[str, ...] = ()
    # the player disclosed real-world self-harm, abuse or danger (`guardrails.player_disclosure`): the
    # answer was the voice's step-back line and the words are withheld from the log
    disclosure: str | None = None
    rules: RulesVerdict | None = None  # None: the model named no action (the safe answer was said)
    timed_out: bool = False  # generation stopped at the request's time limit
    # the engine failed mid-answer (an adapter unloaded by a rollback, a crash): what it raised; the answer
    # ended with the rules engine's decision
    engine_error: str | None = None


MAX_FEEDBACK_COMMENT_CHARS = 500


class Feedback(BaseModel):
    """What the game reports after an answer: how the encounter went (a label of the species' closed set,
    `Rulebook.outcomes`) and, optionally, a designer's rating of the line (-1 down, +1 up) with a comment."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    outcome: str | None = Field(default=None, pattern=OUTCOME_LABEL)
    rating: Literal[-1, 0, 1] | None = None
    comment: str | None = Field(default=None, max_length=MAX_FEEDBACK_COMMENT_CHARS)


class FeedbackRecord(BaseModel):
    """One feedback line of the log: appended after the answer it names."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["feedback"] = "feedback"
    timestamp: datetime
    species: str
    response_id: str
    feedback: Feedback


class PlayerLogRecord(BaseModel):
    model_config = ConfigDict(frozen=True)
    timestamp: datetime
    species: str
    player_id: str
    encounter: Encounter
    npc_action: str | None = None
    npc_line: str | None = None
    npc: str | None = None  # the named NPC (tier 3), if any
    served: ServedInfo | None = None  # set for answers of the serving layer
    response_id: str | None = None  # the id the server returned (`chatcmpl-...`): what feedback names
    feedback: Feedback | None = None  # the newest feedback on this answer (a game may also write it inline)

    def went_wrong(self, outcomes: dict[str, str]) -> bool:
        """The game said this answer went wrong: an outcome with the verdict `went_wrong`, or a line rated down."""
        if self.feedback is None:
            return False
        return self.feedback.rating == -1 or outcomes.get(self.feedback.outcome or "") == "went_wrong"


class PlayerInteractions(StoredArtifact):
    """Player log records fit to learn from (what `player_interactions` produces)."""

    model_config = ConfigDict(frozen=True)
    species: str
    records: tuple[PlayerLogRecord, ...]


_APPEND_LOCK = threading.Lock()


_PG_TABLES: set[str] = set()  # databases whose table exists (created once per process)


def _pg(location: str):
    database = open_database(location)
    if database.location not in _PG_TABLES:
        with database.transaction() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS player_logs (id BIGSERIAL PRIMARY KEY, species TEXT NOT NULL, "
                "recorded_at TIMESTAMPTZ NOT NULL, record JSONB NOT NULL)"
            )
            cur.execute("CREATE INDEX IF NOT EXISTS player_logs_species_id ON player_logs (species, id)")
        _PG_TABLES.add(database.location)
    return database


def append_player_log(root: Path | str, record: PlayerLogRecord | FeedbackRecord) -> Path | str:
    """Append one record: to `<root>/<species>/served-<date>.jsonl`, the folder the player-log sensor
    watches (one `write` of a whole line under a lock, so concurrent requests never interleave), or as
    one row of the `player_logs` table when `root` is a PostgreSQL URL."""
    validate_species_id(record.species)
    if is_postgres(root):
        with _pg(str(root)).transaction() as cur:
            cur.execute(
                "INSERT INTO player_logs (species, recorded_at, record) VALUES (%s, %s, %s)",
                [record.species, record.timestamp, record.model_dump_json()],
            )
        return redact(str(root))
    root = Path(root)
    folder = root / record.species
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"served-{record.timestamp:%Y-%m-%d}.jsonl"
    line = (record.model_dump_json() + "\n").encode("utf-8")
    with _APPEND_LOCK:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    return path


def _raw_lines(root: Path | str, species: str):
    """(where, JSON text, problem) of every stored record of a species, oldest first; `problem` is set
    (and the text empty) for what cannot be read as text."""
    if is_postgres(root):
        with _pg(str(root)).transaction() as cur:
            cur.execute("SELECT id, record::text FROM player_logs WHERE species = %s ORDER BY id", [species])
            rows = cur.fetchall()
        yield from ((f"{redact(str(root))} player_logs id {row_id}", text, None) for row_id, text in rows)
        return
    folder = Path(root) / species
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            data = path.read_bytes()
        except OSError as exc:  # a folder or a broken link named *.jsonl: reported, the rest is read
            yield f"{path}", "", f"unreadable: {exc.strerror or exc}"
            continue
        for number, raw in enumerate(data.splitlines(), start=1):
            if raw.strip():
                # a line that is not UTF-8 becomes a reported problem, not a crash of every species' read
                try:
                    yield f"{path}:{number}", raw.decode("utf-8"), None
                except UnicodeDecodeError:
                    yield f"{path}:{number}", "", "not UTF-8 text"


def read_player_logs(root: Path | str, species: str) -> tuple[list[PlayerLogRecord], list[tuple[str, str]]]:
    """Valid records, each with the newest feedback on it attached, and (file:line or table row, problem)
    for every record that could not be read (feedback naming no answer of the species among them)."""
    validate_species_id(species)
    records, problems = [], []
    feedback: dict[str, tuple[str, FeedbackRecord]] = {}
    for where, line, problem in _raw_lines(root, species):
        if problem:
            problems.append((where, problem))
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and data.get("kind") == "feedback":
                note = FeedbackRecord.model_validate(data)
                if note.species != species:
                    problems.append((where, f"feedback is for {note.species!r}, not {species!r}"))
                else:
                    feedback[note.response_id] = (where, note)  # the newest wins
                continue
            record = PlayerLogRecord.model_validate(data)
        except (json.JSONDecodeError, ValidationError) as exc:
            problems.append((where, str(exc).splitlines()[0][:200]))
            continue
        if record.species != species or record.encounter.species != species:
            problems.append((where, f"record is for {record.species!r}, not {species!r}"))
            continue
        records.append(record)
    answered = {r.response_id for r in records if r.response_id}
    for response_id, (where, _) in feedback.items():
        if response_id not in answered:
            problems.append((where, f"feedback on {response_id!r}, which is no answer in the {species} logs"))
    records = [
        r.model_copy(update={"feedback": feedback[r.response_id][1].feedback}) if r.response_id in feedback else r
        for r in records
    ]
    return records, problems


def find_served_answer(root: Path | str, species: str, response_id: str) -> PlayerLogRecord | None:
    """The served answer with this response id in a species' logs, or None: only lines holding the id are
    parsed, so an unknown id costs a scan of the text, not a validation of every record."""
    for _, line, problem in _raw_lines(root, species):
        if problem or response_id not in line:
            continue
        try:
            data = json.loads(line)
            if data.get("kind") != "feedback" and data.get("response_id") == response_id:
                return PlayerLogRecord.model_validate(data)
        except (json.JSONDecodeError, ValidationError, AttributeError):
            continue
    return None


def text_refusal(text: str) -> str | None:
    """Why free text from a player or a game may not be kept (it reads as instructions to a model, or breaks a
    guardrail), or None."""
    finding = screen(text)
    if finding:
        return f"reads as instructions to a model ({finding})"
    violations = guardrail_violations(text)
    return f"guardrail:{violations[0].category}" if violations else None


# --- filtering before player history may teach anything --------------------------------------

PII_PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "card": re.compile(r"\b(?:\d[ -]?){13,16}\b"),
    "phone": re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d\b"),
    "ip": re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
}


class FilterReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    read: int
    kept: int
    dropped: dict[str, int]  # reason -> records
    redactions: dict[str, int]  # kind of personal data -> occurrences removed
    with_feedback: int = 0  # kept records the game reported on
    lines_rated_down: int = 0  # kept situations whose served line was rated down: the line is removed


def redact_personal_data(text: str, counts: dict[str, int] | None = None) -> str:
    """Replace emails, card numbers, phone numbers and IP addresses with a placeholder."""
    for kind, pattern in PII_PATTERNS.items():
        text, n = pattern.subn(f"[{kind} removed]", text)
        if counts is not None and n:
            counts[kind] = counts.get(kind, 0) + n
    return text


MAX_UTTERANCE_CHARS = 2000  # what a player says to an NPC in one turn; longer is pasted text, not play


def filter_player_records(
    records: list[PlayerLogRecord],
    max_utterance_chars: int = MAX_UTTERANCE_CHARS,
) -> tuple[list[PlayerLogRecord], FilterReport]:
    """Keep records fit to learn from: utterances within the size limit, no prompt-injection attempts, no
    player disclosing real-world self-harm, abuse or danger (counted as `disclosure:<category>`, never kept),
    nothing against the guardrails, personal data removed from what the player said."""

    kept: list[PlayerLogRecord] = []
    dropped: dict[str, int] = {}
    redactions: dict[str, int] = {}
    with_feedback = rated_down = 0
    for record in records:
        said = record.encounter.player.utterance
        if len(said) > max_utterance_chars:  # checked first: the other screens need not scan it
            dropped["utterance_too_long"] = dropped.get("utterance_too_long", 0) + 1
            continue
        if screen(said):
            dropped["prompt_injection"] = dropped.get("prompt_injection", 0) + 1
            continue
        disclosure = (record.served.disclosure if record.served else None) or player_disclosure(said)
        if disclosure:  # a real person may be at risk: the studio's safety process has it, training never does
            dropped[f"disclosure:{disclosure}"] = dropped.get(f"disclosure:{disclosure}", 0) + 1
            continue
        violations = guardrail_violations(f"{said}\n{record.npc_line or ''}")
        if violations:
            reason = f"guardrail:{violations[0].category}"
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        clean = redact_personal_data(said, redactions)
        player = record.encounter.player.model_copy(update={"utterance": clean})
        encounter = record.encounter.model_copy(update={"player": player})
        update = {"encounter": encounter, "player_id": _pseudonym(record.player_id)}
        if record.feedback is not None:
            with_feedback += 1
            comment = record.feedback.comment
            if comment and text_refusal(comment):
                comment = None  # a game may write logs itself: its comments pass the same screen as the API's
            update["feedback"] = record.feedback.model_copy(
                update={"comment": redact_personal_data(comment, redactions) if comment else None}
            )
            if record.feedback.rating == -1:  # a line rated down never becomes an example: only the situation stays
                rated_down += 1
                update["npc_line"] = None
        kept.append(record.model_copy(update=update))
    return kept, FilterReport(
        read=len(records),
        kept=len(kept),
        dropped=dropped,
        redactions=redactions,
        with_feedback=with_feedback,
        lines_rated_down=rated_down,
    )


def _pseudonym(player_id: str) -> str:
    return "player-" + content_hash(f"player:{player_id}")[:12]


def log_watermark(root: Path | str, species: str) -> dict:
    """How much log there is for a species, cheaply: records, and the newest file's mtime (folder) or
    the newest row id (table)."""
    if is_postgres(root):
        with _pg(str(root)).transaction() as cur:
            cur.execute("SELECT count(*), COALESCE(max(id), 0) FROM player_logs WHERE species = %s", [species])
            count, newest = cur.fetchone()
        return {"records": int(count), "newest_id": int(newest)}
    folder = Path(root) / species
    files = [p for p in sorted(folder.glob("*.jsonl")) if p.is_file()] if folder.is_dir() else []
    lines = sum(sum(1 for line in p.read_bytes().splitlines() if line.strip()) for p in files)
    return {"records": lines, "files": len(files), "newest_mtime": max((p.stat().st_mtime for p in files), default=0.0)}
