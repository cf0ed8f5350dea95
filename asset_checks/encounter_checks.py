"""Encounters: a task where reading the situation matters, measured with trivial reference policies."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    Config,
    MetadataValue,
    asset_check,
)

from srl_assets.encounter_assets import encounters
from srl_assets.metadata import markdown_table
from srl_assets.partitions import species_partitions
from srl_forge.encounters import DesignSpec, EncounterSet, task_difficulty_report
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine


class TaskDifficultyConfig(Config):
    max_best_constant_accuracy: float = 0.35  # any one action may be the engine's top choice at most this often
    max_random_acceptable_accuracy: float = 0.7  # a random acceptable action must usually miss the top choice
    # a split's minimum size: unset, the size the `encounters` run was configured to design (its DesignSpec)
    min_train: int | None = None
    min_validation: int | None = None
    min_test: int | None = None


@asset_check(
    asset=encounters,
    blocking=True,
    partitions_def=species_partitions,
    additional_ins={"rules": AssetIn("rules")},
    description="The task is not too easy: on every split the best constant action and a random acceptable "
    "action rarely hit the rules engine's top choice, and every split has the size the encounters were designed "
    "with (or the check's own minimum).",
)
def task_difficulty(
    context: AssetCheckExecutionContext, config: TaskDifficultyConfig, encounters: EncounterSet, rules: CompiledRules
) -> AssetCheckResult:
    report = task_difficulty_report(encounters, RulesEngine(rules.rulebook))
    spec = encounters.spec or DesignSpec()
    asked = {"train": config.min_train, "validation": config.min_validation, "test": config.min_test}
    minimum = {split: spec.size(split) if n is None else n for split, n in asked.items()}
    failures = []
    for split, r in report.items():
        if r["best_constant"]["accuracy"] > config.max_best_constant_accuracy:
            failures.append(
                f"{split}: always '{r['best_constant']['name'].split(':', 1)[1]}' hits the top action in "
                f"{r['best_constant']['accuracy']:.2f} > {config.max_best_constant_accuracy}"
            )
        if r["random_acceptable"]["accuracy"] > config.max_random_acceptable_accuracy:
            failures.append(
                f"{split}: a random acceptable action hits the top action in "
                f"{r['random_acceptable']['accuracy']:.2f} > {config.max_random_acceptable_accuracy}"
            )
        if r["encounters"] < minimum[split]:
            failures.append(f"{split}: {r['encounters']} encounters < {minimum[split]}")
    return AssetCheckResult(
        passed=not failures,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "failures": MetadataValue.json(failures),
            "best_constant_accuracy_max": MetadataValue.float(
                max(r["best_constant"]["accuracy"] for r in report.values())
            ),
            "random_acceptable_accuracy_max": MetadataValue.float(
                max(r["random_acceptable"]["accuracy"] for r in report.values())
            ),
            "difficulty": markdown_table(
                [
                    "split",
                    "n",
                    "minimum",
                    "best constant (acc. / graded)",
                    "random acceptable (acc. / graded)",
                    "contested",
                    "near-miss",
                    "open",
                    "max top share",
                ],
                [
                    (
                        split,
                        r["encounters"],
                        minimum[split],
                        f"{r['best_constant']['name']} {r['best_constant']['accuracy']:.2f} / "
                        f"{r['best_constant']['graded']:.2f}",
                        f"{r['random_acceptable']['accuracy']:.2f} / {r['random_acceptable']['graded']:.2f}",
                        f"{r['contested_share']:.2f}",
                        f"{r['near_miss_share']:.2f}",
                        f"{r['open_share']:.2f}",
                        f"{r['max_top_share']:.2f}",
                    )
                    for split, r in report.items()
                ],
            ),
        },
    )
