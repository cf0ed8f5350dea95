"""Evaluation: base, SRL, RLVR-only and SRL→RLVR on the held-out encounters, next to the trivial
reference policies (best constant action, random acceptable action) and the ceiling (the rules
engine with the expert's line)."""

import random

from dagster import AssetExecutionContext, MetadataValue, Output, asset

from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import versioned
from srl_assets.partitions import species_partitions
from srl_assets.resources import ArtifactStoreResource, TeachersResource, TrainingResource
from srl_assets.training_assets import png_markdown
from srl_forge.encounters import EncounterSet
from srl_forge.grading import best_constant_action
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import TrajectoryBatch
from training.evaluation import (
    EvalCase, EvaluationReport, comparison_png, comparison_table, evaluate_reference, evaluate_variant, judge_policy,
)
from training.grpo_runner import AdapterArtifact
from training.model_loading import load_base_model, load_tokenizer, resolve_model
from training.outcome_dataset import outcome_row
from training.rlvr import decision_text
from training.step_dataset import step_rows


@asset(
    partitions_def=species_partitions,
    group_name="evaluation",
    code_version="evaluation-3",
    kinds={"pytorch", "python"},
    automation_condition=FRESH,
    description="Held-out comparison of base / SRL / RLVR-only / SRL→RLVR next to the best constant action, a "
    "random acceptable action and the rules engine (ceiling): decision accuracy, acceptable rate, graded reward, "
    "format, line grounding, in character, distinct-2, duplicate lines, guardrail violations — with 95% intervals.",
)
def evaluation(context: AssetExecutionContext, encounters: EncounterSet, expert_trajectories: TrajectoryBatch,
               rules: CompiledRules, srl_checkpoint: AdapterArtifact, rlvr_checkpoint: AdapterArtifact,
               rlvr_only_checkpoint: AdapterArtifact, artifacts: ArtifactStoreResource, training: TrainingResource,
               teachers: TeachersResource) -> Output[EvaluationReport]:
    from peft import PeftModel

    species = context.partition_key
    store = artifacts.store()
    rulebook = rules.rulebook
    engine = RulesEngine(rulebook)
    with input_errors_as_failures():
        voice = teachers.voice(rulebook)
        judge = teachers.build(rulebook).judge  # optional: an LLM judge of the lines, off by default
    held_out = encounters.by_split("test")
    total_held_out = len(held_out)
    limit = training.held_out_limit
    if limit is not None and limit < len(held_out):
        held_out = sorted(random.Random(f"eval:{species}").sample(held_out, limit), key=lambda e: e.encounter_id)
    if not held_out:
        context.log.warning("no held-out encounters: raise test_size in the encounters config")
    constant = best_constant_action([e.label for e in encounters.by_split("train") if e.label], engine.vocabulary)
    accepted = {a.encounter_id: a for a in expert_trajectories.accepted}
    cases = [EvalCase(row=outcome_row(e, engine, voice), encounter=e.encounter,
                      expert_answer=decision_text(accepted[e.encounter_id].trajectory)
                      if e.encounter_id in accepted else None) for e in held_out]
    steps = [row for e in held_out if e.encounter_id in accepted
             for row in step_rows(accepted[e.encounter_id].trajectory, e.encounter, "test")][:training.evaluation_step_rows]

    results = {name: evaluate_reference(name, cases, constant) for name in ("best_constant", "random_acceptable")}
    model_path = resolve_model(training.srl_config().model, training.model_cache_path)
    tokenizer = load_tokenizer(model_path)
    variants = {
        "base": (None, "direct"),
        "srl": (srl_checkpoint, "stepwise"),
        "rlvr_only": (rlvr_only_checkpoint, "direct"),
        "srl_rlvr": (rlvr_checkpoint, "direct"),
    }
    for name, (checkpoint, mode) in variants.items():
        context.log.info(f"evaluating {name} ({mode}) on {len(cases)} held-out encounters")
        # A fresh base per variant (a second's load): merging an adapter changes the weights in place, and
        # unmerging again would leave float rounding in the next variant's base.
        model = load_base_model(model_path, training.quantization)
        if checkpoint:
            model = PeftModel.from_pretrained(model, str(store.local_path(checkpoint.adapter_uri)))
            if training.quantization == "none":  # merged into this fresh base copy: no LoRA matmuls (~15% on CPU)
                model = model.merge_and_unload()
        results[name] = evaluate_variant(model, tokenizer, mode, cases, steps, log=context.log.info)
        results[name]["adapter_version"] = checkpoint.version if checkpoint else None
        del model  # one model in memory at a time
    results["rules_engine"] = evaluate_reference("rules_engine", cases, constant)
    if judge is not None:
        with teachers.outages_retried(context):
            for name, result in results.items():
                context.log.info(f"judging {name}'s lines")
                result["metrics"].update(judge_policy(judge, species, cases, result["lines"]))
    table = comparison_table(results)
    scope = (f"{len(cases)} of {total_held_out} held-out encounters"
             + (" (a fixed, seeded subset)" if len(cases) < total_held_out else "")
             + f"; best constant action (chosen on train): `{constant}`; 95% bootstrap intervals")
    report = EvaluationReport(species=species, held_out_encounters=len(cases), held_out_total=total_held_out,
                              step_rows=len(steps), constant_action=constant, budget=training.budget,
                              results=results, table=table, scope=scope)
    context.log.info(f"\n{scope}\n{table}")
    plot = comparison_png(results, f"{species}: {scope.split(';')[0]}")
    numbers = {f"{name}_{metric}": MetadataValue.float(float(r["metrics"][metric]["value"]))
               for name, r in results.items()
               for metric in ("decision_accuracy", "graded_reward", "format_rate", "line_grounding")}
    srl_rlvr = results["srl_rlvr"]["metrics"]["decision_accuracy"]
    return versioned(
        report,
        {
            "comparison": MetadataValue.md(f"{scope}\n\n{table}"),
            "comparison_plot": png_markdown(plot, "held-out comparison"),
            "held_out_encounters": len(cases),
            "held_out_total": total_held_out,
            "step_rows": len(steps),
            "constant_action": constant,
            **numbers,
            "srl_rlvr_decision_accuracy_low": MetadataValue.float(float(srl_rlvr["low"])),
            "srl_rlvr_decision_accuracy_high": MetadataValue.float(float(srl_rlvr["high"])),
            "guardrail_violations": int(sum(r["metrics"]["guardrail_violations"]["value"] for r in results.values())),
        },
    )
