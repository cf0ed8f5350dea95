"""Encounters: the game designer's rule-covering sample, plus encounters mined from player logs."""

from collections import Counter

from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset

from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import markdown_table, versioned
from srl_assets.partitions import species_partitions
from srl_assets.resources import TeachersResource
from srl_forge.encounters import DesignSpec, EncounterSet
from srl_forge.grading import task_profile
from srl_forge.player_logs import PlayerInteractions
from srl_forge.rulebook import CompiledRules


class EncounterDesignConfig(Config):
    """Sizes and balance of the designed task (see `srl_forge.encounters.DesignSpec`)."""

    train_size: int = 300
    validation_size: int = 60
    test_size: int = 60  # held out: never reaches training
    min_per_rule: int = 3  # every rule must fire in at least this many encounters
    max_top_share: float = 0.28  # no action is the engine's top choice in more of a split than this
    max_open_share: float = 0.08  # encounters where every action is acceptable: a small labelled minority
    near_miss_rate: float = 0.6


@asset(
    partitions_def=species_partitions,
    group_name="encounters",
    code_version="encounters-6",
    kinds={"python"},
    automation_condition=FRESH,
    description="Encounters where the decision matters (designer role): stratified so no action is the engine's "
    "top choice in more than ~30% of a split, contested encounters and near-miss pairs in the same split, every "
    "rule covered; plus encounters mined from player logs (those the game reported as gone wrong first, each with a "
    "near miss). Split by scenario hash into train / validation / test.",
)
def encounters(
    context: AssetExecutionContext,
    config: EncounterDesignConfig,
    rules: CompiledRules,
    player_interactions: PlayerInteractions,
    teachers: TeachersResource,
) -> Output[EncounterSet]:
    rulebook, live_state = rules.rulebook, rules.game_state
    records = player_interactions.records
    went_wrong = frozenset(r.encounter.encounter_id for r in records if r.went_wrong(rulebook.outcomes))
    with input_errors_as_failures():
        built = teachers.build(rulebook)
    spec = DesignSpec(**config.model_dump())
    with teachers.outages_retried(context, built):
        encounter_set = built.designer.design(rulebook, live_state, spec, [r.encounter for r in records], went_wrong)
    if encounter_set.uncovered:
        context.log.warning(f"rules below {config.min_per_rule} encounters: {encounter_set.uncovered}")
    splits = Counter(e.split for e in encounter_set.encounters)
    origins = Counter(e.origin for e in encounter_set.encounters)
    covered = sum(1 for n in encounter_set.coverage.values() if n >= config.min_per_rule)
    profiles = {
        split: task_profile(e.label for e in encounter_set.by_split(split) if e.label)
        for split in ("train", "validation", "test")
    }
    near_misses = sum(e.near_miss_of is not None for e in encounter_set.encounters)
    return versioned(
        encounter_set,
        {
            "encounters": len(encounter_set.encounters),
            "train": splits["train"],
            "validation": splits["validation"],
            "test": splits["test"],
            "mined_from_player_logs": origins["player_log"],
            "teacher_proposals_kept": origins["teacher_proposal"],  # an LLM designer's, where they fit the balance
            # ... and those left out: another species, or player words that talk to a model
            "teacher_proposals_refused": getattr(built.designer, "refused", 0),
            # served answers the game reported as gone wrong: their encounters are offered first, with a near miss
            "mined_went_wrong": sum(e.encounter_id in went_wrong for e in encounter_set.encounters),
            "near_miss_pairs": near_misses,
            "contested_share_train": MetadataValue.float(profiles["train"]["contested_share"]),
            "open_share_train": MetadataValue.float(profiles["train"]["open_share"]),
            "max_top_share_train": MetadataValue.float(profiles["train"]["max_top_share"]),
            "design_attempts": encounter_set.attempts,
            "balance_table": markdown_table(
                ["split", "encounters", "contested", "open (all acceptable)", "top actions (share)"],
                [
                    (
                        split,
                        p["encounters"],
                        f"{p['contested_share']:.2f}",
                        f"{p['open_share']:.2f}",
                        ", ".join(f"{a} {v:.2f}" for a, v in p["top_action_share"].items()),
                    )
                    for split, p in profiles.items()
                ],
            ),
            "rule_coverage": MetadataValue.float(covered / max(1, len(encounter_set.coverage))),
            "uncovered_rules": MetadataValue.json(encounter_set.uncovered),
            "coverage_table": markdown_table(["rule", "encounters firing it"], sorted(encounter_set.coverage.items())),
        },
    )
