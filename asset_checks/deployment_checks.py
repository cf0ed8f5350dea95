"""Deployment: served adapters keep the accuracy they were promoted with."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from srl_assets.partitions import species_partitions
from srl_assets.performance_assets import adapter_performance


@asset_check(
    asset=adapter_performance,
    partitions_def=species_partitions,
    blocking=False,
    description="Warns when a served adapter's live decision accuracy fell below its evaluated level by "
    "more than the margin (retraining on the new player logs is then due).",
)
def served_accuracy_holds(context, adapter_performance: dict) -> AssetCheckResult:
    return AssetCheckResult(
        passed=not adapter_performance["stale"],
        severity=AssetCheckSeverity.WARN,
        metadata={
            "stale": MetadataValue.json(adapter_performance["stale"]),
            "served_answers": adapter_performance["served_answers"],
        },
    )
