"""Evaluation: a new adapter is not worse than the incumbent, and stays within the guardrails."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    MetadataValue,
    asset_check,
)

from srl_assets.evaluation_assets import evaluation
from srl_assets.partitions import species_partitions
from training.evaluation import CANDIDATE, EvaluationReport

MAX_VIOLATION_RATE = 0.0


@asset_check(
    asset=evaluation,
    blocking=False,
    partitions_def=species_partitions,
    description="The SRL→RLVR adapter's decision accuracy is not worse than the incumbent's (the previous "
    "evaluation of this species) beyond the noise of the held-out set: the incumbent's accuracy must not lie "
    "above the new adapter's 95% interval. A warning: the blocking version of this gate is deployment's "
    "`not_worse_than_blue`, which holds the adapter back in green and names the numbers.",
)
def not_worse_than_incumbent(context: AssetCheckExecutionContext, evaluation: EvaluationReport) -> AssetCheckResult:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("evaluation"), asset_partitions=[evaluation.species]),
        limit=2,
    ).records
    current = _metric(records[0], "srl_rlvr_decision_accuracy") if records else None
    current_high = _metric(records[0], "srl_rlvr_decision_accuracy_high") if records else None
    incumbent = _metric(records[1], "srl_rlvr_decision_accuracy") if len(records) > 1 else None
    passed = incumbent is None or current_high is None or incumbent <= current_high
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "decision_accuracy": MetadataValue.float(current or 0.0),
            "decision_accuracy_high": MetadataValue.float(current_high or 0.0),
            "incumbent_decision_accuracy": MetadataValue.float(incumbent if incumbent is not None else -1.0),
            "has_incumbent": incumbent is not None,
        },
    )


def _metric(record, key: str) -> float | None:
    entry = record.asset_materialization.metadata.get(key)
    return float(entry.value) if entry is not None else None


@asset_check(
    asset=evaluation,
    blocking=True,
    partitions_def=species_partitions,
    description="No guardrail violation in the deployment candidate's (SRL→RLVR) evaluated outputs; "
    "the other variants' rates and every flagged output are reported.",
)
def guardrail_violation_rate(context: AssetCheckExecutionContext, evaluation: EvaluationReport) -> AssetCheckResult:
    rates = evaluation.violation_rates()
    flagged = [{"variant": name, **f.model_dump()} for name, r in evaluation.results.items() for f in r.flagged_outputs]
    return AssetCheckResult(
        passed=rates[CANDIDATE] <= MAX_VIOLATION_RATE,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "candidate_violation_rate": MetadataValue.float(rates[CANDIDATE]),
            "violation_rates": MetadataValue.json(rates),
            "flagged_outputs": MetadataValue.json(flagged[:10]),
        },
    )
