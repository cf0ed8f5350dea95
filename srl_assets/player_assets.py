"""Player history: the logs as an observable source, filtered into interactions fit to learn from; and the
drift of the served adapters in live play, the source that retrains a species when its monster falls behind."""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    DataVersion,
    DataVersionsByPartition,
    MetadataValue,
    Output,
    asset,
    observable_source_asset,
)

from srl_assets.automation import FRESH
from srl_assets.metadata import versioned
from srl_assets.partitions import species_partitions, versions_by_species
from srl_assets.resources import PlayerLogsResource
from srl_forge.hashing import content_hash
from srl_forge.player_logs import (
    PlayerInteractions,
    filter_player_records,
    log_watermark,
    read_player_logs,
)


@observable_source_asset(
    partitions_def=species_partitions,
    group_name="sources",
    description="Player interaction logs per species (JSONL by default). The player-log sensor records a new "
    "data version once enough new records arrive.",
)
def player_logs(context, player_logs: PlayerLogsResource):
    return versions_by_species(context.instance, lambda s: content_hash(log_watermark(player_logs.location, s)))


@asset(
    partitions_def=species_partitions,
    group_name="player_history",
    code_version="player-interactions-4",
    kinds={"python"},
    deps=[player_logs],
    automation_condition=FRESH,
    description="Player interactions fit to learn from: prompt-injection attempts, players disclosing real-world "
    "self-harm, abuse or danger, and guardrail violations "
    "dropped, personal data removed, players pseudonymised; the game's feedback attached to the answers it names "
    "(a line rated down is removed, so it never becomes an example).",
)
def player_interactions(context: AssetExecutionContext, player_logs: PlayerLogsResource) -> Output[PlayerInteractions]:
    species = context.partition_key
    records, problems = read_player_logs(player_logs.location, species)
    for where, problem in problems[:20]:
        context.log.warning(f"skipped unreadable player log record {where}: {problem}")
    kept, report = filter_player_records(records, player_logs.max_utterance_chars)
    return versioned(
        PlayerInteractions(species=species, records=tuple(kept)),
        {
            "records_read": report.read,
            "records_kept": report.kept,
            "unreadable_records": len(problems),
            "with_feedback": report.with_feedback,
            "lines_rated_down": report.lines_rated_down,
            "dropped": MetadataValue.json(report.dropped),
            "personal_data_removed": MetadataValue.json(report.redactions),
        },
    )


@observable_source_asset(
    partitions_def=species_partitions,
    group_name="sources",
    description="Which served adapters of the species fell behind in live play (adapter_performance's stale list). "
    "performance_sensor records a new version when that list becomes non-empty or changes; srl_checkpoint depends "
    "on it, so a drop in served accuracy (or a rise in guardrail replacements) retrains the species' chain.",
)
def served_drift(context):
    # only species with stale adapters: observing a healthy one would itself look like a change
    stale = {
        s: stale_adapters(context.instance, s) for s in context.instance.get_dynamic_partitions(species_partitions.name)
    }
    return DataVersionsByPartition({s: DataVersion(drift_version(lines)) for s, lines in stale.items() if lines})


def stale_adapters(instance, species: str) -> list[str]:
    """The stale list of the species' latest `adapter_performance` (empty: none, or not materialized)."""
    records = instance.fetch_materializations(
        # by key: the performance asset sits downstream of this module's assets
        AssetRecordsFilter(asset_key=AssetKey("adapter_performance"), asset_partitions=[species]),
        limit=1,
    ).records
    value = records[0].asset_materialization.metadata.get("stale_adapters") if records else None
    return sorted(value.value) if value is not None else []


def drift_version(stale: list[str]) -> str:
    return content_hash(sorted(stale)) if stale else "healthy"
