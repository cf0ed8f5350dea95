"""Live performance of the served adapters, from the player logs the server appends to."""

from dagster import (
    AssetExecutionContext,
    Config,
    DataVersion,
    MetadataValue,
    Output,
    asset,
)

from serving.performance import served_performance
from srl_assets.automation import FRESH
from srl_assets.deployment_assets import deployed_adapter
from srl_assets.metadata import markdown_table
from srl_assets.partitions import species_partitions
from srl_assets.player_assets import player_logs as player_logs_source
from srl_assets.resources import (
    ArtifactStoreResource,
    DeploymentResource,
    PlayerLogsResource,
)
from srl_forge.hashing import content_hash
from srl_forge.player_logs import read_player_logs
from srl_forge.registry import AdapterMetrics
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine
from srl_forge.stats import Interval


class PerformanceConfig(Config):
    accuracy_drop_margin: float = 0.10  # served accuracy this far below the evaluated level marks the adapter stale
    min_answers: int = 20  # fewer served answers than this: too few to judge
    guardrail_replaced_limit: float = 0.05  # a larger share of lines replaced by the guardrails: stale too


@asset(
    partitions_def=species_partitions,
    group_name="deployment",
    code_version="adapter-performance-2",
    kinds={"python"},
    deps=[player_logs_source, deployed_adapter],
    automation_condition=FRESH,
    description="Served answers of the species' adapters, re-verified by the rules engine: decision accuracy, "
    "guardrail replacements, format failures and latency per served model and adapter version, and the game's "
    "feedback (outcomes reported, answers that went wrong, lines rated down); the adapter is "
    "marked stale when its served accuracy falls below its evaluated accuracy by the configured margin or the "
    "guardrails replace too many of its lines. A stale adapter makes `served_drift` (performance_sensor) and so "
    "the species' training chain stale: it retrains without a person.",
)
def adapter_performance(
    context: AssetExecutionContext,
    config: PerformanceConfig,
    player_logs: PlayerLogsResource,
    artifacts: ArtifactStoreResource,
    deployment: DeploymentResource,
) -> Output[dict]:
    species = context.partition_key
    registry = deployment.open()
    records, problems = read_player_logs(player_logs.location, species)
    served = [r for r in records if r.served is not None]
    engines = {}

    def engine_for(version):
        adapter = registry.get(version) if version else None
        uri = adapter.lineage.get("rules_uri") if adapter else None
        if uri is None:  # an unknown or persona adapter: its species adapter's rules
            parent = registry.get(adapter.parent_version) if adapter and adapter.parent_version else None
            uri = parent.lineage.get("rules_uri") if parent else None
        if uri not in engines:
            engines[uri] = RulesEngine(artifacts.load(uri, CompiledRules).rulebook) if uri else None
        return engines[uri]

    def evaluated_metrics(version):
        adapter = registry.get(version) if version else None
        return adapter.metrics if adapter else AdapterMetrics()

    rows = served_performance(
        served,
        engine_for,
        evaluated_metrics,
        config.accuracy_drop_margin,
        config.min_answers,
        config.guardrail_replaced_limit,
    )
    stale = [r for r in rows if r["stale"]]
    summary = {
        "species": species,
        "served_answers": len(served),
        "unreadable_records": len(problems),
        "by_model": rows,
        "stale": [f"{r['model']}@{r['adapter_version'][:12]} ({r['stale_reason']})" for r in stale],
    }
    return Output(
        summary,
        data_version=DataVersion(content_hash(summary)),
        metadata={
            "served_answers": len(served),
            "feedback_reports": sum(r["feedback"] for r in rows),
            "answers_went_wrong": sum(r["went_wrong"] for r in rows),
            "stale_adapters": MetadataValue.json(summary["stale"]),
            "by_model": markdown_table(
                [
                    "model",
                    "adapter",
                    "answers",
                    "decision acc. [95%]",
                    "evaluated",
                    "guardrail replaced",
                    "format failures",
                    "TTFT p50 ms",
                    "TTFT p95 ms",
                    "feedback",
                    "went wrong",
                    "rated down",
                    "outcomes",
                    "stale",
                ],
                [
                    [
                        r["model"],
                        r["adapter_version"][:12],
                        r["answers"],
                        Interval(**r["decision_accuracy"]).cell(),
                        "" if r["evaluated_accuracy"] is None else f"{r['evaluated_accuracy']:.2f}",
                        r["guardrail_replaced"],
                        r["format_failures"],
                        f"{r['ttft_p50_ms']:.0f}",
                        f"{r['ttft_p95_ms']:.0f}",
                        r["feedback"],
                        r["went_wrong"],
                        r["rated_down"],
                        ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items())),
                        f"STALE: {r['stale_reason']}" if r["stale"] else "",
                    ]
                    for r in rows
                ],
            ),
        },
    )
