"""Live performance of served adapters: every served answer re-verified by the rules engine."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from serving.latency import percentile
from srl_forge.grading import top_actions
from srl_forge.player_logs import PlayerLogRecord
from srl_forge.stats import mean_interval


def served_performance(
    records: Sequence[PlayerLogRecord],
    engine_for: Callable,
    evaluated_metrics: Callable,
    margin: float,
    min_answers: int,
    guardrail_limit: float = 0.05,
) -> list[dict]:
    """Per (served model, adapter version): decision accuracy against the engine's top actions (persona
    overrides are not re-applied here: a persona that avoids its species' top choice counts as a miss),
    guardrail replacements, format failures, latency; `stale` when accuracy is below the evaluated one
    by more than `margin`, or more than `guardrail_limit` of its lines replaced by the guardrails, with at least
    `min_answers` answers (`stale_reason` says which). The game's feedback is counted beside them: answers
    reported on, outcomes by label, those that went wrong (by the verdicts of the adapter's own rulebook)
    and lines rated down."""
    groups: dict[tuple[str, str], list[PlayerLogRecord]] = defaultdict(list)
    for record in records:
        groups[(record.served.model, record.served.adapter_version or "")].append(record)
    rows = []
    for (model, version), group in sorted(groups.items()):
        engine = engine_for(version)
        hits = [float(engine is not None and r.npc_action in top_actions(engine.decide(r.encounter))) for r in group]
        accuracy = mean_interval(hits)
        evaluated_accuracy = evaluated_metrics(version).decision_accuracy
        evaluated = evaluated_accuracy.value if evaluated_accuracy else None
        ttfts = [r.served.ttft_ms for r in group if r.served.ttft_ms is not None]
        replaced = sum(bool(r.served.guardrail_categories) for r in group)
        outcomes = engine.rulebook.outcomes if engine is not None else {}
        reported = [r for r in group if r.feedback is not None]
        judged = len(group) >= min_answers
        reasons = [
            *(["accuracy"] if judged and evaluated is not None and accuracy.value < evaluated - margin else []),
            *(["guardrails"] if judged and replaced / len(group) > guardrail_limit else []),
        ]
        rows.append(
            {
                "model": model,
                "adapter_version": version,
                "answers": len(group),
                "decision_accuracy": accuracy.model_dump(),
                "evaluated_accuracy": evaluated,
                "guardrail_replaced": replaced,
                "format_failures": sum(not r.served.format_ok for r in group),
                "ttft_p50_ms": percentile(ttfts, 0.5),
                "ttft_p95_ms": percentile(ttfts, 0.95),
                "feedback": len(reported),
                "outcomes": dict(Counter(r.feedback.outcome for r in reported if r.feedback.outcome)),
                "went_wrong": sum(r.went_wrong(outcomes) for r in reported),
                "rated_down": sum(r.feedback.rating == -1 for r in reported),
                "stale": bool(reasons),
                "stale_reason": " and ".join(reasons),
            }
        )
    return rows
