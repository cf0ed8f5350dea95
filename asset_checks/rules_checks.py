"""Rules: no required/forbidden contradiction that priority does not resolve."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from srl_assets.partitions import species_partitions
from srl_assets.resources import ArtifactStoreResource
from srl_assets.rules_assets import load_compiled_rules, rules
from srl_forge.encounter import GameState
from srl_forge.encounters import EncounterDesigner
from srl_forge.rulebook import Rulebook
from srl_forge.rules_engine import RulesEngine


def rule_conflicts(rulebook: Rulebook, samples_per_rule: int = 20, seed: int = 0) -> list[dict]:
    """Unresolved conflicts found by deciding encounters built to fire each rule (under every event)."""
    engine = RulesEngine(rulebook)
    found: dict[tuple, dict] = {}
    for events in [()] + [(e,) for e in rulebook.known_events]:
        designer = EncounterDesigner(rulebook, GameState(live_events=events), seed=seed)
        for rule in rulebook.rules:
            for _ in range(samples_per_rule):
                encounter = designer.targeted(rule)
                if encounter is None:
                    continue
                for conflict in engine.decide(encounter).conflicts:
                    key = (conflict.action, conflict.rule_ids)
                    found.setdefault(key, {"rules": list(conflict.rule_ids), "action": conflict.action,
                                           "reason": conflict.reason, "example": encounter.model_dump(mode="json")})
    return list(found.values())


@asset_check(asset=rules, blocking=True, partitions_def=species_partitions,
             description="No two rules of equal priority require and forbid the same action (or require "
             "disjoint actions) in any encounter that fires both.")
def rules_consistency(context: AssetCheckExecutionContext, rules: dict,
                      artifacts: ArtifactStoreResource) -> AssetCheckResult:
    rulebook, _ = load_compiled_rules(artifacts, rules)
    conflicts = rule_conflicts(rulebook)
    return AssetCheckResult(passed=not conflicts, severity=AssetCheckSeverity.ERROR,
                            metadata={"conflicts": len(conflicts), "details": MetadataValue.json(conflicts[:5])})
