"""Sensors: notice lore, game-state and player-log changes, so automation re-runs only what went stale.

- `source_sensor` hashes each species' lore, rule and voice files and the game state every tick and
  records a new data version (a runless observation) only for what changed. A new lore folder becomes a
  new species partition, observed at once (an unobserved source would block automation silently). It
  also records when it first saw each version, and once automation has had its chance, re-requests a
  reader whose last run read an older version (an edit made while that reader ran is not lost).
- `player_log_sensor` keeps a per-species watermark of log records in its cursor; once a species
  has `stale_after_records` new records, it records a new version of that species' `player_logs`.
- `automation` evaluates the assets' automation conditions; it runs by default.
"""

import json
import time

from dagster import (
    AssetObservation,
    AssetRecordsFilter,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from srl_assets.lore_assets import lore as lore_asset
from srl_assets.lore_assets import lore_sources
from srl_assets.metadata import SOURCE_VERSION_READ
from srl_assets.partitions import npc_partitions, species_partitions
from srl_assets.persona_assets import persona_source_version, persona_sources
from srl_assets.player_assets import drift_version, served_drift, stale_adapters
from srl_assets.player_assets import player_logs as player_logs_source
from srl_assets.resources import (
    DeploymentResource,
    GameStateResource,
    PlayerLogsResource,
    ProjectFiles,
    TeachersResource,
)
from srl_assets.rules_assets import game_state, rules_sources
from srl_assets.rules_assets import rules as rules_asset
from srl_assets.trajectory_assets import expert_trajectories, voice_sources
from srl_forge.errors import InputError
from srl_forge.hashing import content_hash
from srl_forge.personas import discover_personas, split_persona_key
from srl_forge.player_logs import log_watermark
from srl_forge.species import discover_species

DATA_VERSION_TAG = "dagster/data_version"
PARTITION_TAG = "dagster/partition"


# A source, the asset that reads it first, and how the current version of a species' files is hashed.
SOURCES = (
    ("lore", lore_sources, lore_asset, lambda files, teachers, species: files.lore_version(species)),
    ("rules", rules_sources, rules_asset, lambda files, teachers, species: files.rules_version(species)),
    ("voices", voice_sources, expert_trajectories, lambda files, teachers, species: teachers.voice_version(species)),
)
# How long automation has to pick up a newly observed version before the sensor re-requests a reader that
# did not read it (the automation sensor evaluates every 30 s).
REREAD_GRACE_SECONDS = 120.0
ACTIVE_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@sensor(
    name="source_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=AssetSelection.assets(lore_asset, rules_asset, expert_trajectories),
    description="Records new data versions of each species' lore, rule and voice files and of the game state "
    "when they change; registers a species when its lore folder appears; re-requests a reader (lore, rules, "
    "expert_trajectories) whose last run read an older version than the newest observed one.",
)
def source_sensor(
    context: SensorEvaluationContext,
    project_files: ProjectFiles,
    game_state_db: GameStateResource,
    teachers: TeachersResource,
):
    cursor = json.loads(context.cursor) if context.cursor else {}
    for name, *_ in SOURCES:
        cursor.setdefault(name, {})
    cursor.setdefault("observed_at", {})
    cursor.setdefault("settled", {})  # source/species -> the version its reader was checked against
    cursor.setdefault("game_state", None)
    on_disk = discover_species(project_files.lore_path, on_invalid=lambda exc: context.log.error(str(exc)))
    known = set(context.instance.get_dynamic_partitions(species_partitions.name))
    new = [s for s in on_disk if s not in known]
    if new:
        # registered before the observations below, which need the partitions to exist
        context.instance.add_dynamic_partitions(species_partitions.name, new)
        context.log.info(f"registered new species: {', '.join(new)}")
    now = time.time()
    events, run_requests = [], []
    for name, source, reader, version_of in SOURCES:
        for species in on_disk:
            version = version_of(project_files, teachers, species)
            if cursor[name].get(species) != version:
                events.append(
                    AssetObservation(asset_key=source.key, partition=species, tags={DATA_VERSION_TAG: version})
                )
                cursor[name][species] = version
                cursor["observed_at"][f"{name}/{species}"] = now
            elif (
                cursor["settled"].get(f"{name}/{species}") != version
                and now - cursor["observed_at"].get(f"{name}/{species}", 0.0) >= REREAD_GRACE_SECONDS
            ):
                state = _read_state(context.instance, reader, species, version)
                if state == "behind":
                    run_requests.append(_reread_request(reader, species, version))
                if state != "pending":  # checked once per version, not on every tick after
                    cursor["settled"][f"{name}/{species}"] = version
    state_version = game_state_db.store().version()
    if cursor["game_state"] != state_version:
        events.append(AssetObservation(asset_key=game_state.key, tags={DATA_VERSION_TAG: state_version}))
        cursor["game_state"] = state_version
    return SensorResult(asset_events=events, run_requests=run_requests, cursor=json.dumps(cursor, sort_keys=True))


def _read_state(instance, reader, species: str, newest: str) -> str:
    """ "current" when the reader's last materialization read `newest` (or predates recording what it read),
    "behind" when it read an older version, "pending" when it never materialized (automation requests missing
    partitions itself) or a run of that partition is under way. Automation misses an edit when the reader
    itself materialized in the same evaluation window as the observation: its own update cancels the trigger."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=reader.key, asset_partitions=[species]), limit=1
    ).records
    if not records:
        return "pending"
    read = records[0].asset_materialization.metadata.get(SOURCE_VERSION_READ)
    if read is None or read.value == newest:
        return "current"
    active = instance.get_runs(RunsFilter(statuses=ACTIVE_RUN_STATUSES, tags={PARTITION_TAG: species}), limit=50)
    if any(run.asset_selection is None or reader.key in run.asset_selection for run in active):
        return "pending"
    return "behind"


def _reread_request(reader, species: str, newest: str) -> RunRequest:
    """One run of the reader for the species; the run key makes it once per version."""
    return RunRequest(
        run_key=f"reread:{reader.key.to_user_string()}:{species}:{newest}",
        asset_selection=[reader.key],
        partition_key=species,
        tags={"srl_forge/reason": f"{reader.key.to_user_string()} read an older source version than {newest[:12]}"},
    )


@sensor(
    name="player_log_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches the player-log store with a watermark per species; records a new player_logs "
    "version once enough new records arrived.",
)
def player_log_sensor(context: SensorEvaluationContext, player_logs: PlayerLogsResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    events = []
    for species in context.instance.get_dynamic_partitions(species_partitions.name):
        mark = log_watermark(player_logs.location, species)
        seen = cursor.get(species)
        if seen is None or mark["records"] - seen >= player_logs.stale_after_records:
            events.append(
                AssetObservation(
                    asset_key=player_logs_source.key,
                    partition=species,
                    tags={DATA_VERSION_TAG: content_hash(mark)},
                    metadata={"records": mark["records"], "files": mark["files"]},
                )
            )
            cursor[species] = mark["records"]
    return SensorResult(asset_events=events, cursor=json.dumps(cursor, sort_keys=True))


@sensor(
    name="persona_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Registers an `npc` partition for every persona file (lore/<species>/npcs/<npc>.md) and records "
    "a new persona_sources version when the file changes or the species' blue adapter does.",
)
def persona_sensor(context: SensorEvaluationContext, project_files: ProjectFiles, deployment: DeploymentResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    on_disk = []
    for key in discover_personas(project_files.lore_path):
        try:
            split_persona_key(key)
            on_disk.append(key)
        except InputError as exc:
            context.log.error(str(exc))
    known = set(context.instance.get_dynamic_partitions(npc_partitions.name))
    new = [k for k in on_disk if k not in known]
    if new:
        context.instance.add_dynamic_partitions(npc_partitions.name, new)
        context.log.info(f"registered new NPCs: {', '.join(new)}")
    registry = deployment.open()
    events = []
    for key in on_disk:
        version = persona_source_version(project_files.lore_path, key, registry)
        if cursor.get(key) != version:
            events.append(
                AssetObservation(asset_key=persona_sources.key, partition=key, tags={DATA_VERSION_TAG: version})
            )
            cursor[key] = version
    return SensorResult(asset_events=events, cursor=json.dumps(cursor, sort_keys=True))


automation_sensor = AutomationConditionSensorDefinition(
    "automation",
    target=AssetSelection.all(include_sources=True),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes stale species partitions (declarative automation on every asset).",
)


@sensor(
    name="performance_sensor",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records a new served_drift version for a species when its adapter_performance lists stale "
    "adapters (served accuracy below the evaluated level by the margin, or guardrail replacements up), so the "
    "species' training chain retrains by automation; a healthy species records nothing.",
)
def performance_sensor(context: SensorEvaluationContext):
    cursor = json.loads(context.cursor) if context.cursor else {}
    events = []
    for species in context.instance.get_dynamic_partitions(species_partitions.name):
        stale = stale_adapters(context.instance, species)
        version = drift_version(stale)
        # only a new stale list is recorded: a healthy species and one recovering retrain nothing, and an
        # upgrade retrains no species (served_drift never observed holds nothing back: automation.RETRAINED)
        if stale and cursor.get(species) != version:
            events.append(
                AssetObservation(
                    asset_key=served_drift.key,
                    partition=species,
                    tags={DATA_VERSION_TAG: version},
                    metadata={"stale_adapters": stale},
                )
            )
            context.log.info(f"{species}: served adapters behind ({', '.join(stale)}): its chain is stale")
        cursor[species] = version
    return SensorResult(asset_events=events, cursor=json.dumps(cursor, sort_keys=True))


SENSORS = [source_sensor, performance_sensor, player_log_sensor, persona_sensor, automation_sensor]
