"""Historical player interactions: JSONL files under `<root>/<species>/*.jsonl`, one record a line."""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from srl_forge.encounter import Encounter
from srl_forge.species import validate_species_id


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
    format_ok: bool = True
    guardrail_categories: tuple[str, ...] = ()


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


_APPEND_LOCK = threading.Lock()


def append_player_log(root: Path, record: PlayerLogRecord) -> Path:
    """Append one record to `<root>/<species>/served-<date>.jsonl`, the folder the player-log sensor
    watches. One `write` of a whole line under a lock, so concurrent requests never interleave."""
    validate_species_id(record.species)
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


def read_player_logs(root: Path, species: str) -> tuple[list[PlayerLogRecord], list[tuple[str, str]]]:
    """Valid records, and (file:line, problem) for every record that could not be read."""
    validate_species_id(species)
    records, problems = [], []
    folder = root / species
    if not folder.is_dir():
        return records, problems
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = PlayerLogRecord.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                problems.append((where, str(exc).splitlines()[0][:200]))
                continue
            if record.species != species or record.encounter.species != species:
                problems.append((where, f"record is for {record.species!r}, not {species!r}"))
                continue
            records.append(record)
    return records, problems


# --- filtering before player history may teach anything --------------------------------------

PII_PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "card": re.compile(r"\b(?:\d[ -]?){13,16}\b"),
    "phone": re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d\b"),
    "ip": re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
}
INJECTION = re.compile(
    r"ignore (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?|rules)"
    r"|disregard (all |any |the )?(previous|prior|above|your) (instructions|prompts?|rules)"
    r"|system prompt|developer mode|jailbreak|you are now (a|an|the) |pretend (you are|to be) (an? )?(ai|assistant|chatgpt)"
    r"|</?(system|think)>|\bACTION:\s*[a-z_]+|\bSAY:\s*\"",
    re.IGNORECASE,
)


class FilterReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    read: int
    kept: int
    dropped: dict[str, int]  # reason -> records
    redactions: dict[str, int]  # kind of personal data -> occurrences removed


def redact_personal_data(text: str, counts: dict[str, int] | None = None) -> str:
    """Replace emails, card numbers, phone numbers and IP addresses with a placeholder."""
    for kind, pattern in PII_PATTERNS.items():
        text, n = pattern.subn(f"[{kind} removed]", text)
        if counts is not None and n:
            counts[kind] = counts.get(kind, 0) + n
    return text


def filter_player_records(records: list[PlayerLogRecord]) -> tuple[list[PlayerLogRecord], FilterReport]:
    """Keep records fit to learn from: no prompt-injection attempts, nothing against the guardrails,
    personal data removed from what the player said."""
    from srl_forge.guardrails import check as guardrail_violations

    kept: list[PlayerLogRecord] = []
    dropped: dict[str, int] = {}
    redactions: dict[str, int] = {}
    for record in records:
        said = record.encounter.player.utterance
        if INJECTION.search(said):
            dropped["prompt_injection"] = dropped.get("prompt_injection", 0) + 1
            continue
        violations = guardrail_violations(f"{said}\n{record.npc_line or ''}")
        if violations:
            reason = f"guardrail:{violations[0].category}"
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        clean = redact_personal_data(said, redactions)
        player = record.encounter.player.model_copy(update={"utterance": clean})
        encounter = record.encounter.model_copy(update={"player": player})
        kept.append(record.model_copy(update={"encounter": encounter, "player_id": _pseudonym(record.player_id)}))
    return kept, FilterReport(read=len(records), kept=len(kept), dropped=dropped, redactions=redactions)


def _pseudonym(player_id: str) -> str:
    from srl_forge.hashing import content_hash

    return "player-" + content_hash(f"player:{player_id}")[:12]


def log_watermark(root: Path, species: str) -> dict:
    """How much log there is for a species, cheaply: record lines and the newest file's mtime."""
    folder = root / species
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    lines = sum(sum(1 for line in p.open(encoding="utf-8") if line.strip()) for p in files)
    return {"records": lines, "files": len(files), "newest_mtime": max((p.stat().st_mtime for p in files), default=0.0)}
