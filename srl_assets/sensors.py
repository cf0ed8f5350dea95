"""Sensors: notice lore, game-state and player-log changes, so automation re-runs only what went stale.

- `lore_sensor` hashes each species' lore files and the game state every tick and records a new
  data version (a runless observation) only for what changed. A new lore folder becomes a new
  species partition, observed at once (an unobserved source would block automation silently).
- `player_log_sensor` keeps a per-species watermark of log records in its cursor; once a species
  has `stale_after_records` new records, it records a new version of that species' `player_logs`.
- `automation` evaluates the assets' automation conditions; it runs by default.
"""

import json

from dagster import (
    AssetObservation,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from srl_assets.lore_assets import lore_sources
from srl_assets.partitions import npc_partitions, species_partitions
from srl_assets.persona_assets import persona_source_version, persona_sources
from srl_assets.player_assets import player_logs as player_logs_source
from srl_assets.resources import (
    DeploymentResource,
    GameStateResource,
    PlayerLogsResource,
    ProjectFiles,
)
from srl_assets.rules_assets import game_state
from srl_forge.errors import InputError
from srl_forge.hashing import content_hash
from srl_forge.lore import lore_source_version
from srl_forge.personas import discover_personas, split_persona_key
from srl_forge.player_logs import log_watermark
from srl_forge.species import discover_species

DATA_VERSION_TAG = "dagster/data_version"


@sensor(
    name="lore_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records new data versions of lore_sources (per species) and game_state when they change; "
    "registers a species when its lore folder appears.",
)
def lore_sensor(context: SensorEvaluationContext, project_files: ProjectFiles, game_state_db: GameStateResource):
    cursor = json.loads(context.cursor) if context.cursor else {"lore": {}, "game_state": None}
    on_disk = discover_species(project_files.lore_path, on_invalid=lambda exc: context.log.error(str(exc)))
    known = set(context.instance.get_dynamic_partitions(species_partitions.name))
    new = [s for s in on_disk if s not in known]
    if new:
        # registered before the observations below, which need the partitions to exist
        context.instance.add_dynamic_partitions(species_partitions.name, new)
        context.log.info(f"registered new species: {', '.join(new)}")
    events = []
    for species in on_disk:
        version = lore_source_version(project_files.lore_path, species, project_files.lore_limits)
        if cursor["lore"].get(species) != version:
            events.append(
                AssetObservation(asset_key=lore_sources.key, partition=species, tags={DATA_VERSION_TAG: version})
            )
            cursor["lore"][species] = version
    state_version = game_state_db.store().version()
    if cursor["game_state"] != state_version:
        events.append(AssetObservation(asset_key=game_state.key, tags={DATA_VERSION_TAG: state_version}))
        cursor["game_state"] = state_version
    return SensorResult(asset_events=events, cursor=json.dumps(cursor, sort_keys=True))


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

SENSORS = [lore_sensor, player_log_sensor, persona_sensor, automation_sensor]
