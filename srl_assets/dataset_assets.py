"""The reward datasets: SRL step-wise rows and RLVR verifier rows (train + validation only)."""

from collections import Counter

from dagster import AssetExecutionContext, MetadataValue, Output, asset

from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import markdown_table, versioned
from srl_assets.partitions import species_partitions
from srl_assets.resources import TeachersResource
from srl_assets.trajectory_assets import voice_sources
from srl_forge.encounters import EncounterSet
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import TrajectoryBatch
from training.outcome_dataset import outcome_row
from training.step_dataset import TRAINING_SPLITS, RowDataset, step_rows


def _dataset(rows: list[dict], extra: dict, preview: tuple) -> Output[RowDataset]:
    splits = Counter(r["split"] for r in rows)
    headers, pick = preview
    return versioned(
        RowDataset(rows=rows),
        {
            "rows": len(rows),
            "train_rows": splits["train"],
            "validation_rows": splits["validation"],
            **extra,
            "preview": markdown_table(headers, [pick(r) for r in rows[:8]]),
        },
    )


@asset(
    partitions_def=species_partitions,
    group_name="datasets",
    code_version="srl-dataset-4",
    kinds={"python", "parquet"},
    automation_condition=FRESH,
    description="SRL step-wise rows: context = system prompt, encounter, expert steps 1..k-1 and the next "
    "step's title; target = expert step k. Train and validation splits only.",
)
def srl_dataset(
    context: AssetExecutionContext, expert_trajectories: TrajectoryBatch, encounters: EncounterSet
) -> Output[RowDataset]:
    by_id = {e.encounter_id: e for e in encounters.encounters}
    rows = [
        row
        for a in expert_trajectories.accepted
        if a.split in TRAINING_SPLITS
        for row in step_rows(
            a.trajectory,
            by_id[a.encounter_id].encounter,
            a.split,
            top_actions=by_id[a.encounter_id].label.top_actions if by_id[a.encounter_id].label else (),
        )
    ]
    titles = Counter(r["expert_title"] for r in rows)
    return _dataset(
        rows,
        {"trajectories": len({r["encounter_id"] for r in rows}), "target_titles": MetadataValue.json(dict(titles))},
        (["row", "step", "target"], lambda r: (r["row_id"], r["expert_title"], r["expert_action"][:90])),
    )


@asset(
    partitions_def=species_partitions,
    group_name="datasets",
    code_version="rlvr-dataset-5",
    kinds={"python", "parquet"},
    automation_condition=FRESH,
    deps=[voice_sources],  # its stock phrases
    description="RLVR rows: the encounter and the verifier's ground truth (the graded score of every action, "
    "dialogue constraints, grounding terms, stock phrases), no expert text. Train and validation splits only.",
)
def rlvr_dataset(
    context: AssetExecutionContext, encounters: EncounterSet, rules: CompiledRules, teachers: TeachersResource
) -> Output[RowDataset]:
    engine = RulesEngine(rules.rulebook)
    with input_errors_as_failures():
        voice = teachers.voice(rules.rulebook)
    rows = [outcome_row(e, engine, voice) for e in encounters.encounters if e.split in TRAINING_SPLITS]
    best = Counter(" | ".join(r["top_actions"]) or "(conflict)" for r in rows)
    return _dataset(
        rows,
        {
            "rule_conflicts": sum(r["has_conflict"] for r in rows),
            "contested_rows": sum(r["contested"] for r in rows),
            "near_miss_rows": sum(r["near_miss_of"] is not None for r in rows),
            "top_actions": MetadataValue.json(dict(best.most_common())),
        },
        (
            ["encounter", "acceptable", "recommended"],
            lambda r: (r["encounter_id"], ", ".join(r["acceptable_actions"]), r["recommended_action"]),
        ),
    )
