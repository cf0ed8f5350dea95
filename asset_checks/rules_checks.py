"""Rules: no required/forbidden contradiction that priority does not resolve."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from srl_assets.partitions import species_partitions
from srl_assets.rules_assets import rules
from srl_forge.encounters import rule_conflicts
from srl_forge.rulebook import CompiledRules


@asset_check(
    asset=rules,
    blocking=True,
    partitions_def=species_partitions,
    description="No two rules of equal priority require and forbid the same action (or require "
    "disjoint actions) in any encounter that fires both.",
)
def rules_consistency(context: AssetCheckExecutionContext, rules: CompiledRules) -> AssetCheckResult:
    conflicts = rule_conflicts(rules.rulebook)
    return AssetCheckResult(
        passed=not conflicts,
        severity=AssetCheckSeverity.ERROR,
        metadata={"conflicts": len(conflicts), "details": MetadataValue.json(conflicts[:5])},
    )
