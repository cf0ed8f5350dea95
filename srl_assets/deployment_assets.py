"""Deployment: the SRL→RLVR adapter lands in green and is promoted to blue on each tier where the gates
pass (see `srl_forge.deployment`); the registry keeps every version with its lineage and every
promotion, hold-back and rollback."""

import random

from dagster import AssetExecutionContext, DataVersion, MetadataValue, Output, asset

from serving.engine import open_engine
from serving.engine_protocol import ServedAdapter
from serving.latency import ttft_summary
from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import markdown_table
from srl_assets.partitions import species_partitions
from srl_assets.resources import (
    ArtifactStoreResource,
    DeploymentResource,
    TrainingResource,
)
from srl_forge.databases import redact
from srl_forge.deployment import deploy_candidate, served_name
from srl_forge.encounters import EncounterSet
from srl_forge.hashing import content_hash
from srl_forge.lore import SpeciesLore
from srl_forge.policy import rlvr_prompt
from srl_forge.registry import AdapterMetrics, AdapterVersion, deployment_target
from srl_forge.rulebook import CompiledRules
from training.evaluation import CANDIDATE, EvaluationReport
from training.grpo_runner import AdapterArtifact
from training.step_dataset import RowDataset


def measure_candidate_latency(
    store,
    training: TrainingResource,
    deployment: DeploymentResource,
    adapter_uri: str,
    encounter_set: EncounterSet,
    vocabulary,
    persona_intro: str | None = None,
) -> dict:
    """Time to first streamed token of the candidate on held-out encounter prompts, one stream at a time,
    through the engine that will serve it, at the precision it will be served in."""

    held_out = encounter_set.by_split("test") or encounter_set.by_split("validation")
    picked = random.Random("latency").sample(held_out, min(len(held_out), deployment.latency_prompts))
    prompts = [rlvr_prompt(e.encounter, vocabulary, persona_intro) for e in picked]
    precisions = {tier.embedded_precision for tier in deployment.tiers().values()}
    precision = precisions.pop() if len(precisions) == 1 else "float32"  # what the embedded server serves
    pool = open_engine(deployment.serving_engine, training.model, training.model_cache_path, precision=precision)
    pool.sync(
        [
            ServedAdapter(
                name="candidate",
                target="candidate",
                tier="tier1",
                version=content_hash(adapter_uri),
                path=str(store.local_path(adapter_uri)),
            )
        ]
    )
    return {**ttft_summary(pool, "candidate", prompts), "engine": f"{pool.name} ({pool.precision})"}


def register_and_deploy(
    context, deployment: DeploymentResource, adapter: AdapterVersion, serves: str, latency: dict
) -> Output[dict]:
    registry = deployment.open()
    with input_errors_as_failures():
        tiers = deployment.tiers()
    registry.register(adapter)
    outcomes = deploy_candidate(
        registry,
        tiers,
        registry.get(adapter.version),
        serves,
        latency["ttft_p50_ms"],
        deployment.triggered_by + f" (run {context.run_id[:8]})",
    )
    for outcome in outcomes:
        (context.log.info if outcome.result in ("promoted", "already_blue") else context.log.warning)(
            f"{adapter.target} {outcome.tier}: {outcome.result} — {outcome.reason}"
        )
    events = registry.events(adapter.target)
    promoted = [o for o in outcomes if o.blue]
    talk = "\n".join(
        f"- `{served_name(adapter.target, o.tier)}` ({o.tier}, blue {o.blue[:12]}): `make serve`, then "
        f"`openai.OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='local').chat.completions.create("
        f"model='{served_name(adapter.target, o.tier)}', "
        "messages=[{'role': 'user', 'content': 'Good evening.'}], stream=True)`"
        for o in promoted
    )
    state = {
        "target": adapter.target,
        "candidate": adapter.version,
        "tiers": {o.tier: {"result": o.result, "blue": o.blue, "reason": o.reason} for o in outcomes},
    }
    return Output(
        {**state, "adapter_uri": adapter.adapter_uri},
        data_version=DataVersion(content_hash(state)),
        metadata={
            "candidate_version": adapter.version,
            "outcome": markdown_table(
                ["tier", "result", "blue now", "blue before", "reason"],
                [[o.tier, o.result, (o.blue or "")[:12], (o.previous_blue or "")[:12], o.reason] for o in outcomes],
            ),
            "gates": markdown_table(
                ["tier", "gate", "passed", "detail"],
                [[o.tier, g.name, "yes" if g.passed else "NO", g.detail] for o in outcomes for g in o.gates],
            ),
            "failing_gates": MetadataValue.json(sorted({g.name for o in outcomes for g in o.gates if not g.passed})),
            "ttft_p50_ms": MetadataValue.float(float(latency["ttft_p50_ms"])),
            "latency_measured_with": latency.get("engine", "given"),
            "ttft_p95_ms": MetadataValue.float(float(latency["ttft_p95_ms"])),
            "deployment_log": markdown_table(
                ["#", "time", "tier", "action", "version", "previous blue", "reason", "by"],
                [
                    [
                        e.event_id,
                        e.at.strftime("%Y-%m-%d %H:%M:%S"),
                        e.tier,
                        e.action,
                        (e.version or "")[:12],
                        (e.previous_blue or "")[:12],
                        e.reason[:160],
                        e.triggered_by,
                    ]
                    for e in events[-15:]
                ],
            ),
            "lineage": MetadataValue.json(adapter.lineage),
            "how_to_talk_to_it": MetadataValue.md(talk or "nothing is promoted: blue keeps serving (see the gates)"),
            "registry": redact(deployment.registry),
        },
    )


@asset(
    partitions_def=species_partitions,
    group_name="deployment",
    code_version="deployed-adapter-2",
    kinds={"duckdb", "python"},
    automation_condition=FRESH,
    description="The SRL→RLVR adapter registered with its lineage and deployed blue-green on the species tiers "
    "(1 and 2): promoted when it beats always answering the best constant action beyond the held-out interval, is "
    "not worse than blue beyond the noise, has no guardrail violations and meets the tier's time-to-first-token "
    "budget; otherwise it stays in green, blue keeps serving and the failing gate is named with its numbers.",
)
def deployed_adapter(
    context: AssetExecutionContext,
    lore: SpeciesLore,
    rules: CompiledRules,
    encounters: EncounterSet,
    srl_dataset: RowDataset,
    rlvr_dataset: RowDataset,
    srl_checkpoint: AdapterArtifact,
    rlvr_checkpoint: AdapterArtifact,
    evaluation: EvaluationReport,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
    deployment: DeploymentResource,
) -> Output[dict]:
    species = context.partition_key
    store = artifacts.store()
    candidate = evaluation.results[CANDIDATE].metrics
    rulebook, state = rules.rulebook, rules.game_state
    lineage = {
        "lore_version": lore.artifact_version,
        "lore_documents": lore.document_ids,
        "rules_version": rules.artifact_version,
        "rules_uri": rules.artifact_uri,
        "rules": sorted(f"{r.id} ({r.source})" for r in rulebook.rules),
        "active_rules": list(rules.active_rule_ids),
        "game_state": state.model_dump(mode="json"),
        "encounters_version": encounters.artifact_version,
        "srl_dataset_version": srl_dataset.artifact_version,
        "rlvr_dataset_version": rlvr_dataset.artifact_version,
        "rlvr_dataset_uri": rlvr_dataset.artifact_uri,
        "encounters_uri": encounters.artifact_uri,
        "evaluation_version": evaluation.artifact_version,
        "evaluation_uri": evaluation.artifact_uri,
        "budget": evaluation.budget,
        "lora_rank": training.rlvr_config().lora_r,
    }
    registry = deployment.open()
    registry.register(
        AdapterVersion(
            version=srl_checkpoint.version,
            target=deployment_target(species),
            kind="srl",
            base_model=srl_checkpoint.base_model,
            adapter_uri=srl_checkpoint.adapter_uri,
            lineage={
                k: lineage[k]
                for k in (
                    "lore_version",
                    "lore_documents",
                    "rules_version",
                    "rules",
                    "encounters_version",
                    "srl_dataset_version",
                )
            },
        )
    )
    adapter = AdapterVersion(
        version=rlvr_checkpoint.version,
        target=deployment_target(species),
        kind="srl_rlvr",
        base_model=rlvr_checkpoint.base_model,
        adapter_uri=rlvr_checkpoint.adapter_uri,
        parent_version=srl_checkpoint.version,
        lineage=lineage,
        metrics=AdapterMetrics(
            decision_accuracy=candidate.decision_accuracy,
            best_constant_accuracy=evaluation.results["best_constant"].metrics.decision_accuracy.value,
            random_acceptable_accuracy=evaluation.results["random_acceptable"].metrics.decision_accuracy.value,
            graded_reward=candidate.graded_reward,
            format_rate=candidate.format_rate,
            guardrail_violations=int(candidate.guardrail_violations.value),
            held_out_encounters=evaluation.held_out_encounters,
        ),
    )
    context.log.info("measuring time to first token of the candidate")
    latency = measure_candidate_latency(store, training, deployment, adapter.adapter_uri, encounters, rulebook.actions)
    return register_and_deploy(context, deployment, adapter, "species", latency)
