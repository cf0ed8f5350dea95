"""Evaluation: base, SRL, RLVR-only and SRL→RLVR on the held-out encounters (the paper's comparison)."""

from dagster import AssetExecutionContext, DataVersion, MetadataValue, Output, asset

from srl_assets.automation import FRESH
from srl_assets.partitions import species_partitions
from srl_assets.resources import ArtifactStoreResource, TrainingResource
from srl_assets.rules_assets import load_compiled_rules
from srl_forge.encounters import EncounterSet
from srl_forge.hashing import content_hash
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import AcceptedTrajectory
from training.evaluation import EvalCase, comparison_table, evaluate_variant
from training.model_loading import load_base_model, load_tokenizer, resolve_model
from training.step_dataset import step_rows


@asset(
    partitions_def=species_partitions,
    group_name="evaluation",
    code_version="evaluation-1",
    kinds={"pytorch", "python"},
    automation_condition=FRESH,
    description="Held-out comparison of base / SRL / RLVR-only / SRL→RLVR: verifier pass rate (greedy and "
    "avg@k), format rate, step similarity, guardrail violations, in-character rate, response length.",
)
def evaluation(context: AssetExecutionContext, encounters: dict, expert_trajectories: dict, rules: dict,
               srl_checkpoint: dict, rlvr_checkpoint: dict, rlvr_only_checkpoint: dict,
               artifacts: ArtifactStoreResource, training: TrainingResource) -> Output[dict]:
    from peft import PeftModel

    species = context.partition_key
    store = artifacts.store()
    rulebook, _ = load_compiled_rules(artifacts, rules)
    engine = RulesEngine(rulebook)
    held_out = [e for e in artifacts.load(encounters["uri"], EncounterSet).encounters if e.split == "test"]
    if not held_out:
        context.log.warning("no held-out encounters: add encounters or raise test_fraction")
    cases = []
    for sampled in held_out:
        decision = engine.decide(sampled.encounter)
        cases.append(EvalCase(encounter=sampled.encounter, vocabulary=engine.vocabulary,
                              acceptable_actions=list(decision.acceptable),
                              dialogue_constraints_json=decision.dialogue.model_dump_json()))
    by_id = {e.encounter_id: e for e in held_out}
    accepted = [AcceptedTrajectory.model_validate(a) for a in store.get_json(expert_trajectories["uri"])]
    steps = [row for a in accepted if a.encounter_id in by_id
             for row in step_rows(a.trajectory, by_id[a.encounter_id].encounter, "test")][:training.evaluation_step_rows]

    model_path = resolve_model(training.srl_config().model, training.model_cache_path)
    tokenizer = load_tokenizer(model_path)
    base = load_base_model(model_path, training.quantization)
    k = training.samples_per_encounter
    variants = {
        "base": (None, "direct"),
        "srl": (srl_checkpoint, "stepwise"),
        "rlvr_only": (rlvr_only_checkpoint, "direct"),
        "srl_rlvr": (rlvr_checkpoint, "direct"),
    }
    results = {}
    for name, (checkpoint, mode) in variants.items():
        context.log.info(f"evaluating {name} ({mode}) on {len(cases)} held-out encounters")
        model = PeftModel.from_pretrained(base, str(store.path_for(checkpoint["adapter_uri"]))) if checkpoint else base
        results[name] = evaluate_variant(model, tokenizer, mode, cases, steps, k=k, log=context.log.info)
        results[name]["adapter_version"] = checkpoint["version"] if checkpoint else None
        if checkpoint:
            base = model.unload()  # back to the plain base model for the next variant
    table = comparison_table(results, k)
    report = {"species": species, "held_out_encounters": len(cases), "step_rows": len(steps), "k": k,
              "results": results, "table": table}
    version = content_hash(report)
    uri = store.put_json("evaluation", species, report)
    context.log.info("\n" + table)
    numbers = {f"{name}_{metric}": MetadataValue.float(float(r[metric]))
               for name, r in results.items()
               for metric in ("verifier_pass_rate", "format_rate", "step_similarity", "in_character_rate")}
    return Output(
        {"species": species, "version": version, "uri": uri, "table": table},
        data_version=DataVersion(version),
        metadata={
            "comparison": MetadataValue.md(table),
            "held_out_encounters": len(cases),
            "step_rows": len(steps),
            **numbers,
            "guardrail_violations": sum(r["guardrail_violations"] for r in results.values()),
            "artifact_uri": MetadataValue.path(uri),
        },
    )
