"""Datasets: size, no train/test leakage, and an SRL reward that can tell outputs apart."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    MetadataValue,
    asset_check,
)

from srl_assets.dataset_assets import rlvr_dataset, srl_dataset
from srl_assets.partitions import species_partitions
from srl_forge.encounters import EncounterSet
from training.rewards import reward_spread
from training.step_dataset import RowDataset, size_and_leakage

MIN_SRL_ROWS = 20
MIN_RLVR_ROWS = 5


def _size_and_leakage_result(dataset: RowDataset, encounters: EncounterSet, minimum: int) -> AssetCheckResult:
    held_out = {e.encounter_id for e in encounters.by_split("test")}
    stats = size_and_leakage(dataset.rows, held_out, minimum)
    return AssetCheckResult(
        passed=stats["passed"],
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows": stats["rows"],
            "minimum_rows": stats["minimum"],
            "leaked_encounters": MetadataValue.json(stats["leaked_encounters"]),
        },
    )


@asset_check(
    asset=srl_dataset,
    blocking=True,
    partitions_def=species_partitions,
    additional_ins={"encounters": AssetIn("encounters")},
    description=f"At least {MIN_SRL_ROWS} rows and no row from a held-out encounter.",
)
def srl_dataset_size_and_leakage(
    context: AssetCheckExecutionContext, srl_dataset: RowDataset, encounters: EncounterSet
) -> AssetCheckResult:
    return _size_and_leakage_result(srl_dataset, encounters, MIN_SRL_ROWS)


@asset_check(
    asset=rlvr_dataset,
    blocking=True,
    partitions_def=species_partitions,
    additional_ins={"encounters": AssetIn("encounters")},
    description=f"At least {MIN_RLVR_ROWS} rows and no row from a held-out encounter.",
)
def rlvr_dataset_size_and_leakage(
    context: AssetCheckExecutionContext, rlvr_dataset: RowDataset, encounters: EncounterSet
) -> AssetCheckResult:
    return _size_and_leakage_result(rlvr_dataset, encounters, MIN_RLVR_ROWS)


@asset_check(
    asset=srl_dataset,
    blocking=True,
    partitions_def=species_partitions,
    description="The step-similarity reward varies across plausible outputs on a sample (else GRPO's "
    "dynamic sampling would filter every group).",
)
def srl_reward_variance(context: AssetCheckExecutionContext, srl_dataset: RowDataset) -> AssetCheckResult:
    spread = reward_spread(srl_dataset.rows)
    return AssetCheckResult(
        passed=spread > 1e-4,
        severity=AssetCheckSeverity.ERROR,
        metadata={"mean_reward_std": MetadataValue.float(spread)},
    )
