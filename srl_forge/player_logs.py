"""Historical player interactions: JSONL files under `<root>/<species>/*.jsonl`, one record a line."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from srl_forge.encounter import Encounter
from srl_forge.species import validate_species_id


class PlayerLogRecord(BaseModel):
    model_config = ConfigDict(frozen=True)
    timestamp: datetime
    species: str
    player_id: str
    encounter: Encounter
    npc_action: str | None = None
    npc_line: str | None = None


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
