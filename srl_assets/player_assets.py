"""Player history: the logs as an observable source, filtered into interactions fit to learn from."""

from dagster import (
    AssetExecutionContext,
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
    code_version="player-interactions-2",
    kinds={"python"},
    deps=[player_logs],
    automation_condition=FRESH,
    description="Player interactions fit to learn from: prompt-injection attempts and guardrail violations "
    "dropped, personal data removed, players pseudonymised.",
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
            "dropped": MetadataValue.json(report.dropped),
            "personal_data_removed": MetadataValue.json(report.redactions),
        },
    )
