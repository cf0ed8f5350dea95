"""Expert trajectories: acceptance rate and rule coverage."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    MetadataValue,
    asset_check,
)

from srl_assets.partitions import species_partitions
from srl_assets.trajectory_assets import expert_trajectories
from srl_forge.encounters import EncounterSet
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import TrajectoryBatch, acceptance_and_coverage

MIN_ACCEPTANCE = 0.8
MIN_RULE_COVERAGE = 0.9


@asset_check(
    asset=expert_trajectories,
    blocking=True,
    partitions_def=species_partitions,
    additional_ins={"encounters": AssetIn("encounters"), "rules": AssetIn("rules")},
    description=f"At least {MIN_ACCEPTANCE:.0%} of encounters get an accepted trajectory, and at least "
    f"{MIN_RULE_COVERAGE:.0%} of the rules fire in an accepted trajectory's encounter.",
)
def trajectory_acceptance_and_coverage(
    context: AssetCheckExecutionContext,
    expert_trajectories: TrajectoryBatch,
    encounters: EncounterSet,
    rules: CompiledRules,
) -> AssetCheckResult:
    stats = acceptance_and_coverage(expert_trajectories, encounters.encounters, RulesEngine(rules.rulebook))
    return AssetCheckResult(
        passed=stats["acceptance_rate"] >= MIN_ACCEPTANCE and stats["rule_coverage"] >= MIN_RULE_COVERAGE,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "acceptance_rate": MetadataValue.float(stats["acceptance_rate"]),
            "rule_coverage": MetadataValue.float(stats["rule_coverage"]),
            "rules_never_exercised": MetadataValue.json(stats["rules_never_exercised"]),
        },
    )
