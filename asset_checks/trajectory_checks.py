"""Expert trajectories: acceptance rate and rule coverage."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetIn, MetadataValue, asset_check

from srl_assets.partitions import species_partitions
from srl_assets.resources import ArtifactStoreResource
from srl_assets.rules_assets import load_compiled_rules
from srl_assets.trajectory_assets import expert_trajectories
from srl_forge.encounters import EncounterSet
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import AcceptedTrajectory

MIN_ACCEPTANCE = 0.8
MIN_RULE_COVERAGE = 0.9


@asset_check(asset=expert_trajectories, blocking=True, partitions_def=species_partitions,
             additional_ins={"encounters": AssetIn("encounters"), "rules": AssetIn("rules")},
             description=f"At least {MIN_ACCEPTANCE:.0%} of encounters get an accepted trajectory, and at least "
             f"{MIN_RULE_COVERAGE:.0%} of the rules fire in an accepted trajectory's encounter.")
def trajectory_acceptance_and_coverage(context: AssetCheckExecutionContext, expert_trajectories: dict,
                                       encounters: dict, rules: dict,
                                       artifacts: ArtifactStoreResource) -> AssetCheckResult:
    rulebook, _ = load_compiled_rules(artifacts, rules)
    engine = RulesEngine(rulebook)
    by_id = {e.encounter_id: e.encounter for e in artifacts.load(encounters["uri"], EncounterSet).encounters}
    accepted = [AcceptedTrajectory.model_validate(a) for a in artifacts.store().get_json(expert_trajectories["uri"])]
    acceptance = len(accepted) / max(1, len(by_id))
    fired = {rule_id for a in accepted for rule_id in engine.decide(by_id[a.encounter_id]).fired_rule_ids}
    coverage = len(fired) / max(1, len(rulebook.rules))
    return AssetCheckResult(
        passed=acceptance >= MIN_ACCEPTANCE and coverage >= MIN_RULE_COVERAGE, severity=AssetCheckSeverity.ERROR,
        metadata={"acceptance_rate": MetadataValue.float(acceptance), "rule_coverage": MetadataValue.float(coverage),
                  "rules_never_exercised": MetadataValue.json(sorted(r.id for r in rulebook.rules if r.id not in fired))},
    )
