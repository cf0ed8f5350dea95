"""Encounters: the game designer's rule-covering sample, plus encounters mined from player logs."""

from collections import Counter

from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset

from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import markdown_table
from srl_assets.partitions import species_partitions
from srl_assets.automation import FRESH
from srl_assets.resources import ArtifactStoreResource, TeachersResource
from srl_assets.rules_assets import load_compiled_rules
from srl_forge.hashing import content_hash
from srl_forge.player_logs import PlayerLogRecord


class EncounterDesignConfig(Config):
    min_per_rule: int = 3  # every rule must fire in at least this many encounters
    random_encounters: int = 12  # unconstrained encounters mixed in
    validation_fraction: float = 0.15
    test_fraction: float = 0.2  # held out: never reaches training
    min_test_encounters: int = 8  # keep designing until the held-out split is at least this large


@asset(
    partitions_def=species_partitions,
    group_name="encounters",
    code_version="encounters-3",
    kinds={"python"},
    automation_condition=FRESH,
    description="Encounters covering every rule at least k times (designer role) plus encounters mined from "
    "player logs, split deterministically into train / validation / held-out test.",
)
def encounters(
    context: AssetExecutionContext,
    config: EncounterDesignConfig,
    rules: dict,
    player_interactions: dict,
    artifacts: ArtifactStoreResource,
    teachers: TeachersResource,
) -> Output[dict]:
    species = context.partition_key
    rulebook, live_state = load_compiled_rules(artifacts, rules)
    records = [PlayerLogRecord.model_validate(r) for r in artifacts.store().get_json(player_interactions["uri"])]
    with input_errors_as_failures():
        designer = teachers.build(rulebook).designer
    encounter_set = designer.design(
        rulebook, live_state, min_per_rule=config.min_per_rule, random_encounters=config.random_encounters,
        validation_fraction=config.validation_fraction, test_fraction=config.test_fraction,
        mined=[r.encounter for r in records], min_test_encounters=config.min_test_encounters,
    )
    if encounter_set.uncovered:
        context.log.warning(f"rules below {config.min_per_rule} encounters: {encounter_set.uncovered}")
    version = content_hash(encounter_set)
    uri = artifacts.store().put_json("encounters", species, encounter_set)
    splits = Counter(e.split for e in encounter_set.encounters)
    origins = Counter(e.origin for e in encounter_set.encounters)
    covered = sum(1 for n in encounter_set.coverage.values() if n >= config.min_per_rule)
    return Output(
        {"species": species, "version": version, "uri": uri, "rules_version": rules["version"]},
        data_version=DataVersion(version),
        metadata={
            "encounters": len(encounter_set.encounters),
            "train": splits["train"], "validation": splits["validation"], "test": splits["test"],
            "mined_from_player_logs": origins["player_log"],
            "rule_coverage": MetadataValue.float(covered / max(1, len(encounter_set.coverage))),
            "uncovered_rules": MetadataValue.json(encounter_set.uncovered),
            "coverage_table": markdown_table(["rule", "encounters firing it"], sorted(encounter_set.coverage.items())),
            "content_hash": version,
            "artifact_uri": MetadataValue.path(uri),
        },
    )
