"""Lore: schema and coverage."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from srl_assets.lore_assets import lore
from srl_assets.partitions import species_partitions
from srl_forge.lore import MIN_DOCUMENTS, SpeciesLore, lore_problems


@asset_check(
    asset=lore,
    blocking=True,
    partitions_def=species_partitions,
    description=f"At least {MIN_DOCUMENTS} documents covering every topic, and a dossier with traits, "
    "weaknesses, speech style and facts.",
)
def lore_schema_and_coverage(context: AssetCheckExecutionContext, lore: SpeciesLore) -> AssetCheckResult:
    problems = lore_problems(lore)
    return AssetCheckResult(
        passed=not problems, severity=AssetCheckSeverity.ERROR, metadata={"problems": MetadataValue.json(problems)}
    )
