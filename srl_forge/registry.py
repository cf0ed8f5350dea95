"""The adapter registry: every adapter version with its lineage, and the blue/green deployment log.

Two tables, both append-only:

- `adapter_versions`: one row per adapter version (its content hash), with the base model, the parent
  adapter, the data versions and lore documents it came from, and its evaluation metrics. The lineage
  is stored when the adapter is registered, never recomputed.
- `deployment_events`: every candidate landing in green, every promotion, every hold-back and every
  rollback, with time, versions, reason, the gates' numbers and who or what triggered it.

The slots are *derived* from the log: blue is the version of the latest `promote` or `rollback`
event of a (target, tier); green is the latest `candidate`. Nothing is updated or deleted, so a
rollback is one more row, and the history is the table.

The same SQL runs on DuckDB (embedded: a file, one short-lived connection per operation) and on
PostgreSQL (production: `postgresql://` URL, psycopg2); only the placeholder style and the JSON column type
(DuckDB `JSON`, PostgreSQL `JSONB`, so lineage, metrics and gates can be queried in SQL) differ. A registry
written before these columns were JSON (text columns `lineage_json`, `metrics_json`, `gates_json`) is
migrated in place when it is opened: the columns are renamed and retyped, every row kept.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from srl_forge.databases import Database, open_database
from srl_forge.species import validate_species_id
from srl_forge.stats import Interval

Tier = Literal["tier1", "tier2", "tier3"]
EventAction = Literal["candidate", "promote", "hold", "rollback"]
TIERS: tuple[str, ...] = ("tier1", "tier2", "tier3")


def deployment_target(species: str, npc: str | None = None) -> str:
    """The served model name: `vampire` for the species adapter, `vampire/count-orlok` for a persona."""
    validate_species_id(species)
    if npc is None:
        return species
    validate_species_id(npc, "npc name")
    return f"{species}/{npc}"


class AdapterMetrics(BaseModel):
    """What the gates and the performance monitor read of an adapter's held-out evaluation."""

    model_config = ConfigDict(frozen=True)
    decision_accuracy: Interval | None = None
    graded_reward: Interval | None = None
    format_rate: Interval | None = None
    best_constant_accuracy: float | None = None  # the references, on the same held-out encounters
    random_acceptable_accuracy: float | None = None
    guardrail_violations: int = 0
    held_out_encounters: int | None = None  # None: not recorded
    persona_address_share: float | None = None  # persona adapters: lines that address the player as the persona does


class Gate(BaseModel):
    """One promotion gate's verdict on a candidate, with the numbers it compared (kept in the log)."""

    model_config = ConfigDict(frozen=True)
    name: str
    passed: bool
    detail: str
    numbers: dict[str, float | int | None] = Field(default_factory=dict)


class AdapterVersion(BaseModel):
    model_config = ConfigDict(frozen=True)
    version: str  # content hash of the adapter folder
    target: str  # species, or species/npc for a persona adapter
    kind: str  # srl_rlvr, persona, ...
    base_model: str
    adapter_uri: str
    parent_version: str | None = None
    lineage: dict[str, Any] = Field(default_factory=dict)  # data versions, lore documents, rule versions
    metrics: AdapterMetrics = Field(default_factory=AdapterMetrics)
    registered_at: datetime | None = None


class DeploymentEvent(BaseModel):
    model_config = ConfigDict(frozen=True)
    event_id: int | None = None
    at: datetime
    target: str
    tier: Tier
    action: EventAction
    version: str | None  # the version this event concerns (the candidate, the new blue)
    previous_blue: str | None
    reason: str
    gates: list[Gate] = Field(default_factory=list)
    triggered_by: str


class RegistryError(RuntimeError):
    pass


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS adapter_versions (
        version VARCHAR PRIMARY KEY, target VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        base_model VARCHAR NOT NULL, adapter_uri VARCHAR NOT NULL, parent_version VARCHAR,
        lineage {json} NOT NULL, metrics {json} NOT NULL, registered_at VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS deployment_events (
        event_id BIGINT PRIMARY KEY, happened_at VARCHAR NOT NULL, target VARCHAR NOT NULL, tier VARCHAR NOT NULL,
        action VARCHAR NOT NULL, version VARCHAR, previous_blue VARCHAR, reason VARCHAR NOT NULL,
        gates {json} NOT NULL, triggered_by VARCHAR NOT NULL)""",
]
# (table, column) of a registry written before the JSON columns, and the column it became
_LEGACY_TEXT_COLUMNS = (
    ("adapter_versions", "lineage_json", "lineage"),
    ("adapter_versions", "metrics_json", "metrics"),
    ("deployment_events", "gates_json", "gates"),
)
_VERSION_COLUMNS = (
    "version",
    "target",
    "kind",
    "base_model",
    "adapter_uri",
    "parent_version",
    "lineage",
    "metrics",
    "registered_at",
)
_EVENT_COLUMNS = (
    "event_id",
    "happened_at",
    "target",
    "tier",
    "action",
    "version",
    "previous_blue",
    "reason",
    "gates",
    "triggered_by",
)


def _now() -> datetime:
    return datetime.now(UTC)


def _from_json(value: Any) -> Any:
    """A JSON column's value: psycopg2 hands JSONB over decoded, DuckDB hands JSON over as text."""
    return json.loads(value) if isinstance(value, str) else value


class AdapterRegistry:
    """The registry in a database. Use `open_registry(url_or_path)`."""

    def __init__(self, database: Database):
        self.database = database
        self.label = f"registry {database.label}"  # where it lives, for messages (never a password)
        json_type = "JSONB" if database.dialect == "postgresql" else "JSON"
        with self._connect() as cur:
            for statement in _SCHEMA:
                cur.execute(statement.format(json=json_type))
            self._migrate_text_columns(cur, json_type)

    def _migrate_text_columns(self, cur, json_type: str) -> None:
        for table, old, new in _LEGACY_TEXT_COLUMNS:
            cur.execute(
                self._sql("SELECT 1 FROM information_schema.columns WHERE table_name = ? AND column_name = ?"),
                [table, old],
            )
            if cur.fetchone() is None:
                continue
            cur.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
            cast = f" USING {new}::JSONB" if json_type == "JSONB" else ""
            cur.execute(f"ALTER TABLE {table} ALTER COLUMN {new} TYPE {json_type}{cast}")

    def _connect(self):
        return self.database.transaction()

    def _sql(self, text: str) -> str:
        return self.database.sql(text)

    # --- adapter versions ---------------------------------------------------------------------

    def register(self, adapter: AdapterVersion) -> AdapterVersion:
        """Store an adapter version once; registering the same version again keeps the first record."""
        existing = self.get(adapter.version)
        if existing is not None:
            return existing
        row = adapter.model_copy(update={"registered_at": adapter.registered_at or _now()})
        with self._connect() as cur:
            cur.execute(
                self._sql(
                    f"INSERT INTO adapter_versions ({', '.join(_VERSION_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_VERSION_COLUMNS))})"
                ),
                [
                    row.version,
                    row.target,
                    row.kind,
                    row.base_model,
                    row.adapter_uri,
                    row.parent_version,
                    json.dumps(row.lineage, sort_keys=True, default=str),
                    row.metrics.model_dump_json(),
                    row.registered_at.isoformat(),
                ],
            )
        return row

    def get(self, version: str) -> AdapterVersion | None:
        with self._connect() as cur:
            cur.execute(
                self._sql(f"SELECT {', '.join(_VERSION_COLUMNS)} FROM adapter_versions WHERE version = ?"), [version]
            )
            row = cur.fetchone()
        if row is None:
            return None
        values = dict(zip(_VERSION_COLUMNS, row))
        return AdapterVersion(
            version=values["version"],
            target=values["target"],
            kind=values["kind"],
            base_model=values["base_model"],
            adapter_uri=values["adapter_uri"],
            parent_version=values["parent_version"],
            lineage=_from_json(values["lineage"]),
            metrics=AdapterMetrics.model_validate(_from_json(values["metrics"])),
            registered_at=datetime.fromisoformat(values["registered_at"]),
        )

    def versions(self, target: str | None = None) -> list[AdapterVersion]:
        with self._connect() as cur:
            where, args = ("WHERE target = ?", [target]) if target else ("", [])
            cur.execute(
                self._sql(f"SELECT version FROM adapter_versions {where} ORDER BY registered_at, version"), args
            )
            found = [r[0] for r in cur.fetchall()]
        return [self.get(v) for v in found]

    def lineage(self, version: str) -> list[AdapterVersion]:
        """The adapter and its ancestors (persona → species adapter → …), each with its stored lineage:
        which lore documents, rule versions and datasets made this monster."""
        chain, seen = [], set()
        current = self.get(version)
        while current is not None and current.version not in seen:
            chain.append(current)
            seen.add(current.version)
            current = self.get(current.parent_version) if current.parent_version else None
        return chain

    # --- deployment log -----------------------------------------------------------------------

    def append(self, event: DeploymentEvent) -> DeploymentEvent:
        if event.version is not None and self.get(event.version) is None:
            raise RegistryError(f"{self.label}: version {event.version} is not registered")
        with self._connect() as cur:
            cur.execute("SELECT COALESCE(MAX(event_id), 0) + 1 FROM deployment_events")
            event_id = cur.fetchone()[0]
            cur.execute(
                self._sql(
                    f"INSERT INTO deployment_events ({', '.join(_EVENT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
                ),
                [
                    event_id,
                    event.at.isoformat(),
                    event.target,
                    event.tier,
                    event.action,
                    event.version,
                    event.previous_blue,
                    event.reason,
                    json.dumps([g.model_dump() for g in event.gates], sort_keys=True),
                    event.triggered_by,
                ],
            )
        return event.model_copy(update={"event_id": event_id})

    def events(self, target: str | None = None, tier: str | None = None) -> list[DeploymentEvent]:
        clauses, args = [], []
        for column, value in (("target", target), ("tier", tier)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as cur:
            cur.execute(
                self._sql(f"SELECT {', '.join(_EVENT_COLUMNS)} FROM deployment_events {where} ORDER BY event_id"), args
            )
            rows = cur.fetchall()
        out = []
        for row in rows:
            values = dict(zip(_EVENT_COLUMNS, row))
            values["at"] = datetime.fromisoformat(values.pop("happened_at"))
            values["gates"] = _from_json(values["gates"])
            out.append(DeploymentEvent(**values))
        return out

    def log_position(self) -> int:
        """The newest event id: a server polls it to notice promotions and rollbacks."""
        with self._connect() as cur:
            cur.execute("SELECT COALESCE(MAX(event_id), 0) FROM deployment_events")
            return int(cur.fetchone()[0])

    def blue(self, target: str, tier: str) -> str | None:
        changes = [e for e in self.events(target, tier) if e.action in ("promote", "rollback")]
        return changes[-1].version if changes else None

    def green(self, target: str, tier: str) -> str | None:
        candidates = [e for e in self.events(target, tier) if e.action == "candidate"]
        return candidates[-1].version if candidates else None

    def blue_slots(self) -> list[tuple[str, str, AdapterVersion]]:
        """(target, tier, adapter) for every slot that serves something."""
        slots: dict[tuple[str, str], str | None] = {}
        for event in self.events():
            if event.action in ("promote", "rollback"):
                slots[(event.target, event.tier)] = event.version
        return [(target, tier, self.get(version)) for (target, tier), version in sorted(slots.items()) if version]

    def green_slots(self) -> list[tuple[str, str, AdapterVersion]]:
        """(target, tier, adapter) for every slot whose latest candidate is not what it serves: one held back
        by a gate, or not promoted yet. Designers compare it with blue side by side."""
        blue: dict[tuple[str, str], str] = {}
        green: dict[tuple[str, str], str] = {}
        for event in self.events():
            if event.action in ("promote", "rollback"):
                blue[(event.target, event.tier)] = event.version
            elif event.action == "candidate":
                green[(event.target, event.tier)] = event.version
        return [
            (target, tier, self.get(version))
            for (target, tier), version in sorted(green.items())
            if version != blue.get((target, tier))
        ]

    def land_candidate(
        self, target: str, tier: str, version: str, triggered_by: str, reason: str = "new adapter"
    ) -> DeploymentEvent:
        return self.append(
            DeploymentEvent(
                at=_now(),
                target=target,
                tier=tier,
                action="candidate",
                version=version,
                previous_blue=self.blue(target, tier),
                reason=reason,
                triggered_by=triggered_by,
            )
        )

    def promote(
        self,
        target: str,
        tier: str,
        version: str,
        gates: list[Gate],
        triggered_by: str,
        reason: str = "all gates passed",
    ) -> DeploymentEvent:
        return self.append(
            DeploymentEvent(
                at=_now(),
                target=target,
                tier=tier,
                action="promote",
                version=version,
                previous_blue=self.blue(target, tier),
                reason=reason,
                gates=gates,
                triggered_by=triggered_by,
            )
        )

    def hold(
        self, target: str, tier: str, version: str, gates: list[Gate], triggered_by: str, reason: str
    ) -> DeploymentEvent:
        return self.append(
            DeploymentEvent(
                at=_now(),
                target=target,
                tier=tier,
                action="hold",
                version=version,
                previous_blue=self.blue(target, tier),
                reason=reason,
                gates=gates,
                triggered_by=triggered_by,
            )
        )

    def previous_blue(self, target: str, tier: str) -> str | None:
        """What blue was before the current blue was first promoted (None: nothing to go back to)."""
        current = self.blue(target, tier)
        promotions = [e for e in self.events(target, tier) if e.action == "promote" and e.version == current]
        return promotions[-1].previous_blue if promotions else None

    def rollback(self, target: str, tier: str, triggered_by: str, reason: str = "manual rollback") -> DeploymentEvent:
        current = self.blue(target, tier)
        if current is None:
            raise RegistryError(f"{self.label}: nothing is deployed for {target} on {tier}")
        previous = self.previous_blue(target, tier)
        if previous is None:
            raise RegistryError(
                f"{self.label}: {target} on {tier} has no earlier blue than {current[:12]} to roll back to"
            )
        return self.append(
            DeploymentEvent(
                at=_now(),
                target=target,
                tier=tier,
                action="rollback",
                version=previous,
                previous_blue=current,
                reason=reason,
                triggered_by=triggered_by,
            )
        )


def open_registry(location: str | Path) -> AdapterRegistry:
    """`postgresql://…` (production) or a DuckDB file path (embedded)."""
    return AdapterRegistry(open_database(location))
