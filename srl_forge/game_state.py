"""The live game state (world flags and live events), seeded from a YAML file: in a DuckDB file
(embedded default) or in PostgreSQL (`postgresql://` URL, production); the same SQL runs on both.

Seed file format:
    world: {time_of_day: night, moon_phase: full, weather: fog}
    live_events:
      - {name: blood_moon, active: true}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError

from srl_forge.databases import open_database
from srl_forge.encounter import GameState
from srl_forge.errors import InputError
from srl_forge.hashing import content_hash
from srl_forge.yaml_files import load_yaml


def read_seed(path: Path, known_events: tuple[str, ...] | None = None) -> tuple[dict, list[dict]]:
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(path, "file", "game-state seed file not found") from exc
    except yaml.YAMLError as exc:
        raise InputError(path, "yaml", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("world"), dict):
        raise InputError(path, "world", "the seed needs a 'world' mapping")
    events = raw.get("live_events") or []
    if not isinstance(events, list):
        raise InputError(path, "live_events", "must be a list of {name, active}")
    for i, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("name"), str):
            raise InputError(path, f"live_events[{i}].name", "each event needs a name")
        if known_events is not None and event["name"] not in known_events:
            raise InputError(path, f"live_events[{i}].name", f"unknown event {event['name']!r}")
    try:
        GameState(**raw["world"])
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(path, "world." + ".".join(str(p) for p in err["loc"]), err["msg"]) from exc
    return raw["world"], events


class GameStateStore:
    """World flags and live events in a database: a DuckDB file path or a `postgresql://` URL."""

    def __init__(self, location: str | Path):
        self.database = open_database(location)
        with self._connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS world_flags (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.execute("CREATE TABLE IF NOT EXISTS live_events (name VARCHAR PRIMARY KEY, active BOOLEAN)")

    def _connect(self):
        return self.database.transaction()

    def _upsert(self, con, table: str, key: str, column: str, rows: list[tuple]) -> None:
        con.executemany(
            self.database.sql(
                f"INSERT INTO {table} VALUES (?, ?) ON CONFLICT ({key}) DO UPDATE SET {column} = excluded.{column}"
            ),
            rows,
        )

    def is_empty(self) -> bool:
        with self._connect() as con:
            con.execute("SELECT count(*) FROM world_flags")
            return con.fetchone()[0] == 0

    def load_seed(
        self, path: Path, known_events: tuple[str, ...] | None = None, replace: bool = False
    ) -> Literal["seeded", "kept", "kept_seed_differs"]:
        """Load the seed (validated first) unless the store already holds a state (or `replace`). Returns what
        happened: a kept store whose state is not the seed's means an edited seed that was not applied."""
        world, events = read_seed(path, known_events)
        if not replace and not self.is_empty():
            active = tuple(sorted(e["name"] for e in events if e.get("active", True)))
            seeded = GameState(**{k: str(v) for k, v in world.items()}, live_events=active)  # stored as text
            return "kept" if seeded == self.current() else "kept_seed_differs"
        with self._connect() as con:
            con.execute("DELETE FROM world_flags")
            con.execute("DELETE FROM live_events")
            self._upsert(con, "world_flags", "key", "value", [(k, str(v)) for k, v in world.items()])
            self._upsert(
                con, "live_events", "name", "active", [(e["name"], bool(e.get("active", True))) for e in events]
            )
        return "seeded"

    def set_flag(self, key: str, value: str) -> None:
        GameState(**{**self.current().model_dump(exclude={"live_events"}), key: value})
        with self._connect() as con:
            self._upsert(con, "world_flags", "key", "value", [(key, value)])

    def set_event(self, name: str, active: bool) -> None:
        with self._connect() as con:
            self._upsert(con, "live_events", "name", "active", [(name, active)])

    def current(self) -> GameState:
        with self._connect() as con:
            con.execute("SELECT key, value FROM world_flags")
            flags = dict(con.fetchall())
            con.execute("SELECT name FROM live_events WHERE active ORDER BY name")
            events = [r[0] for r in con.fetchall()]
        return GameState(**flags, live_events=tuple(events))

    def version(self) -> str:
        return content_hash(self.current())
