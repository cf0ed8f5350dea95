"""Evaluation: base, SRL and SRL→RLVR on the held-out encounters, next to the trivial reference policies
(best constant action, random acceptable action), what the data can teach (a feature classifier fitted on
the train split) and the ceiling (the rules engine with the expert's line); and the ablations (SFT-only,
RLVR-only) on the same encounters."""

import random

from dagster import AssetExecutionContext, Failure, MetadataValue, Output, asset

from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import versioned
from srl_assets.partitions import species_partitions
from srl_assets.resources import (
    ArtifactStoreResource,
    TeachersResource,
    TrainingResource,
)
from srl_assets.training_assets import png_markdown
from srl_assets.trajectory_assets import voice_sources
from srl_forge.encounters import EncounterSet
from srl_forge.grading import best_constant_action
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import TrajectoryBatch
from training.evaluation import (
    REFERENCES,
    EvalCase,
    EvaluationReport,
    comparison_png,
    comparison_table,
    evaluate_reference,
    evaluate_variant,
    judge_policy,
)
from training.feature_classifier import FeatureClassifier
from training.grpo_runner import AdapterArtifact
from training.model_loading import load_base_model, load_tokenizer, resolve_model
from training.outcome_dataset import outcome_row
from training.rlvr import decision_text
from training.step_dataset import step_rows


def _held_out(
    encounters: EncounterSet,
    expert_trajectories: TrajectoryBatch,
    rules: CompiledRules,
    training: TrainingResource,
    teachers: TeachersResource,
    species: str,
    log,
) -> dict:
    """The held-out cases every policy is scored on, the references' inputs and the model folder."""
    rulebook = rules.rulebook
    engine = RulesEngine(rulebook)
    with input_errors_as_failures():
        voice = teachers.voice(rulebook)
    held_out = encounters.by_split("test")
    total = len(held_out)
    limit = training.held_out_limit
    if limit is not None and limit < len(held_out):
        held_out = sorted(random.Random(f"eval:{species}").sample(held_out, limit), key=lambda e: e.encounter_id)
    if not held_out:
        log.warning("no held-out encounters: raise test_size in the encounters config")
    train = [e for e in encounters.by_split("train") if e.label]
    accepted = {a.encounter_id: a for a in expert_trajectories.accepted}
    cases = [
        EvalCase(
            row=outcome_row(e, engine, voice),
            encounter=e.encounter,
            expert_answer=decision_text(accepted[e.encounter_id].trajectory) if e.encounter_id in accepted else None,
        )
        for e in held_out
    ]
    classifier = FeatureClassifier().fit([e.encounter for e in train], [e.label.top_actions for e in train])
    return {
        "cases": cases,
        "total": total,
        "accepted": accepted,
        "held_out": held_out,
        "constant": best_constant_action([e.label for e in train], engine.vocabulary),
        "classifier_actions": classifier.predict([c.encounter for c in cases]),
        "model_path": resolve_model(training.srl_config().model, training.model_cache_path),
    }


def _evaluate_adapters(context, store, training: TrainingResource, held: dict, variants: dict, steps: list) -> dict:
    from peft import PeftModel

    tokenizer = load_tokenizer(held["model_path"])
    results = {}
    for name, (checkpoint, mode) in variants.items():
        cases = held["cases"]
        if mode == "stepwise" and training.stepwise_limit is not None:
            cases = cases[: training.stepwise_limit]  # step-by-step rollouts cost a generation round per step
        context.log.info(f"evaluating {name} ({mode}) on {len(cases)} held-out encounters")
        # A fresh base per variant (a second's load): merging an adapter changes the weights in place, and
        # unmerging again would leave float rounding in the next variant's base. Full precision even for an
        # adapter trained on a quantized base (QLoRA): it is scored on the base it is served on.
        model = load_base_model(held["model_path"])
        if checkpoint:
            model = PeftModel.from_pretrained(model, str(store.local_path(checkpoint.adapter_uri)))
            model = model.merge_and_unload()  # into this fresh base copy: no LoRA matmuls (~15% on CPU)
        result = evaluate_variant(model, tokenizer, mode, cases, steps, log=context.log.info)
        if checkpoint:
            result.adapter_version, result.training_seconds = checkpoint.version, checkpoint.training_seconds
        results[name] = result
        del model  # one model in memory at a time
    return results


def _references(held: dict) -> dict:
    cases, constant = held["cases"], held["constant"]
    return {
        "best_constant": evaluate_reference("best_constant", cases, constant),
        "random_acceptable": evaluate_reference("random_acceptable", cases, constant),
        "feature_classifier": evaluate_reference(
            "feature_classifier", cases, constant, predicted=held["classifier_actions"]
        ),
    }


def _report(
    context, species: str, held: dict, results: dict, steps: list, training: TrainingResource, title: str
) -> tuple[EvaluationReport, dict]:
    cases = held["cases"]
    table = comparison_table(results)
    stepwise = [r.encounters for r in results.values() if r.mode == "stepwise"]
    scope = (
        f"{len(cases)} of {held['total']} held-out encounters"
        + (" (a fixed, seeded subset)" if len(cases) < held["total"] else "")
        + (
            f", the step-by-step SRL rollout on the first {stepwise[0]}"
            if stepwise and stepwise[0] < len(cases)
            else ""
        )
        + f"; best constant action (chosen on train): `{held['constant']}`; 95% bootstrap intervals"
    )
    report = EvaluationReport(
        species=species,
        held_out_encounters=len(cases),
        held_out_total=held["total"],
        step_rows=len(steps),
        constant_action=held["constant"],
        budget=training.budget,
        results=results,
        table=table,
        scope=scope,
        encounter_ids=[c.row["encounter_id"] for c in cases],
    )
    context.log.info(f"\n{scope}\n{table}")
    plot = comparison_png(results, f"{species}: {scope.split(';')[0]}")
    numbers = {
        f"{name}_{metric}": MetadataValue.float(getattr(r.metrics, metric).value)
        for name, r in results.items()
        for metric in ("decision_accuracy", "graded_reward", "format_rate", "line_grounding")
    }
    return report, {
        "comparison": MetadataValue.md(f"{scope}\n\n{table}"),
        "comparison_plot": png_markdown(plot, title),
        "held_out_encounters": len(cases),
        "held_out_total": held["total"],
        "step_rows": len(steps),
        "constant_action": held["constant"],
        **numbers,
        "guardrail_violations": int(sum(r.metrics.guardrail_violations.value for r in results.values())),
    }


@asset(
    partitions_def=species_partitions,
    group_name="evaluation",
    code_version="evaluation-4",
    kinds={"pytorch", "python"},
    automation_condition=FRESH,
    deps=[voice_sources],  # the lines are scored against the voice
    description="Held-out comparison of base / SRL (rolled out step by step) / SRL→RLVR next to the best constant "
    "action, a random acceptable action, a feature classifier fitted on the train split (what the data can teach) "
    "and the rules engine (ceiling): decision accuracy, acceptable rate, graded reward, format, line grounding, in "
    "character, distinct-2, duplicate lines, guardrail violations — with 95% intervals. The ablations are "
    "`ablation_evaluation`'s.",
)
def evaluation(
    context: AssetExecutionContext,
    encounters: EncounterSet,
    expert_trajectories: TrajectoryBatch,
    rules: CompiledRules,
    srl_checkpoint: AdapterArtifact,
    rlvr_checkpoint: AdapterArtifact,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
    teachers: TeachersResource,
) -> Output[EvaluationReport]:
    species = context.partition_key
    store = artifacts.store()
    with input_errors_as_failures():
        judge = teachers.build(rules.rulebook).judge  # optional: an LLM judge of the lines, off by default
    held = _held_out(encounters, expert_trajectories, rules, training, teachers, species, context.log)
    accepted = held["accepted"]
    steps = [
        row
        for e in held["held_out"]
        if e.encounter_id in accepted
        for row in step_rows(accepted[e.encounter_id].trajectory, e.encounter, "test")
    ][: training.evaluation_step_rows]
    results = _references(held)
    results.update(
        _evaluate_adapters(
            context,
            store,
            training,
            held,
            {
                "base": (None, "direct"),
                "srl": (srl_checkpoint, "stepwise"),
                "srl_rlvr": (rlvr_checkpoint, "direct"),
            },
            steps,
        )
    )
    results["rules_engine"] = evaluate_reference("rules_engine", held["cases"], held["constant"])
    if judge is not None:
        with teachers.outages_retried(context):
            for name, result in results.items():
                context.log.info(f"judging {name}'s lines")
                judged = judge_policy(judge, species, held["cases"], result.lines)
                result.metrics = result.metrics.model_copy(update=judged)
    report, metadata = _report(context, species, held, results, steps, training, "held-out comparison")
    srl_rlvr = results["srl_rlvr"].metrics.decision_accuracy
    return versioned(
        report,
        {
            **metadata,
            "srl_rlvr_decision_accuracy_low": MetadataValue.float(srl_rlvr.low),
            "srl_rlvr_decision_accuracy_high": MetadataValue.float(srl_rlvr.high),
        },
    )


@asset(
    partitions_def=species_partitions,
    group_name="ablations",
    code_version="ablation-evaluation-1",
    kinds={"pytorch", "python"},
    deps=[voice_sources],  # the lines are scored against the voice
    description="The paper's comparison in full: the evaluation's rows plus SFT-only and RLVR-only, scored on the "
    "same held-out encounters with the same references, and the seconds each adapter trained.",
)
def ablation_evaluation(
    context: AssetExecutionContext,
    evaluation: EvaluationReport,
    encounters: EncounterSet,
    expert_trajectories: TrajectoryBatch,
    rules: CompiledRules,
    sft_only_checkpoint: AdapterArtifact,
    rlvr_only_checkpoint: AdapterArtifact,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
    teachers: TeachersResource,
) -> Output[EvaluationReport]:
    species = context.partition_key
    held = _held_out(encounters, expert_trajectories, rules, training, teachers, species, context.log)
    if [c.row["encounter_id"] for c in held["cases"]] != list(evaluation.encounter_ids):
        raise Failure(
            description="the evaluation was scored on other held-out encounters; re-materialize it first",
            allow_retries=False,
        )
    ablations = _evaluate_adapters(
        context,
        artifacts.store(),
        training,
        held,
        {
            "sft_only": (sft_only_checkpoint, "direct"),
            "rlvr_only": (rlvr_only_checkpoint, "direct"),
        },
        [],
    )
    order = [*REFERENCES[:-1], "base", "sft_only", "rlvr_only", "srl", "srl_rlvr", "rules_engine"]
    merged = {**evaluation.results, **ablations}
    results = {name: merged[name] for name in order if name in merged}
    report, metadata = _report(context, species, held, results, [], training, "held-out comparison with ablations")
    return versioned(report, metadata)
