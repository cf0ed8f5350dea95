"""Tier 3: a personal adapter per named NPC, trained on top of its species' serving (blue) adapter from
the NPC's persona file, evaluated with the persona's rules, and deployed blue-green on tier 3.

Partitioned by `npc` (`species/npc`). The persona source's version is the persona file's hash *and*
the species' blue adapter version, so a persona retrains when its file changes or its species
adapter is promoted, and adding one NPC touches no other.
"""

import json
import random
from collections import Counter

from dagster import (
    AssetExecutionContext,
    DataVersion,
    DataVersionsByPartition,
    Failure,
    MetadataValue,
    Output,
    asset,
    observable_source_asset,
)

from srl_assets.automation import FRESH
from srl_assets.deployment_assets import measure_candidate_latency, register_and_deploy
from srl_assets.failures import input_errors_as_failures
from srl_assets.partitions import npc_partitions
from srl_assets.resources import (
    ArtifactStoreResource,
    DeploymentResource,
    ProjectFiles,
    TeachersResource,
    TrainingResource,
)
from srl_assets.training_assets import train_adapter
from srl_forge.encounter import Encounter
from srl_forge.encounters import EncounterSet
from srl_forge.hashing import content_hash
from srl_forge.personas import load_persona, persona_path, split_persona_key
from srl_forge.registry import AdapterMetrics, AdapterVersion, deployment_target
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine
from training.evaluation import EvalCase, comparison_table, evaluate_reference, evaluate_variant
from training.model_loading import load_base_model, load_tokenizer, resolve_model
from training.outcome_dataset import outcome_row
from training.persona_dataset import persona_row
from training.rlvr import RLVRJob, run_rlvr_job
from training.step_dataset import RowDataset

SPECIES_TIER = "tier1"  # the species adapter a persona starts from: the one serving generic monsters


def persona_source_version(lore_root, key: str, registry) -> str:
    species, npc = split_persona_key(key)
    path = persona_path(lore_root, species, npc)
    file_hash = content_hash(path.read_bytes()) if path.is_file() else "missing"
    return content_hash({"persona": file_hash, "species_blue": registry.blue(species, SPECIES_TIER)})


@observable_source_asset(
    partitions_def=npc_partitions,
    group_name="sources",
    description="Persona files of named NPCs (lore/<species>/npcs/<npc>.md), versioned together with the "
    "species' blue adapter they are trained on.",
)
def persona_sources(context, project_files: ProjectFiles, deployment: DeploymentResource):
    registry = deployment.open()
    return DataVersionsByPartition(
        {
            key: DataVersion(persona_source_version(project_files.lore_path, key, registry))
            for key in context.instance.get_dynamic_partitions(npc_partitions.name)
        }
    )


def _species_parent(deployment: DeploymentResource, species: str):
    registry = deployment.open()
    version = registry.blue(species, SPECIES_TIER)
    if version is None:
        raise Failure(
            description=f"{species} has no blue adapter on {SPECIES_TIER} yet: materialize "
            f"deployed_adapter[{species}] (and let it pass its gates) before its personas",
            allow_retries=False,
        )
    return registry.get(version)


@asset(
    partitions_def=npc_partitions,
    group_name="personas",
    pool="training",
    code_version="persona-adapter-3",
    kinds={"pytorch", "python"},
    deps=[persona_sources],
    automation_condition=FRESH,
    description="A named NPC's LoRA adapter: the species' blue adapter, taught the persona's voice (SFT on "
    "persona answers) and then GRPO with the verifiable rewards under the persona's rules overrides; "
    "evaluated on the species' held-out encounters with those overrides.",
)
def persona_adapter(
    context: AssetExecutionContext,
    project_files: ProjectFiles,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
    deployment: DeploymentResource,
    teachers: TeachersResource,
) -> Output[dict]:
    from peft import PeftModel

    with input_errors_as_failures():
        species, npc = split_persona_key(context.partition_key)
    parent = _species_parent(deployment, species)
    store = artifacts.store()
    rulebook = artifacts.load(parent.lineage["rules_uri"], CompiledRules).rulebook
    engine = RulesEngine(rulebook)
    with input_errors_as_failures():
        persona = load_persona(project_files.lore_path, species, npc, rulebook.actions, project_files.lore_limits)
        voice = teachers.voice(rulebook)
    species_rows = artifacts.load(parent.lineage["rlvr_dataset_uri"], RowDataset).rows
    rows = [persona_row(r, persona, engine, voice) for r in species_rows]
    budget_rows = {"tiny": 8, "quick": 48, "standard": 160}.get(
        training.budget
    )  # the voice needs few rows; `full`: all
    train = [r for r in rows if r["split"] == "train"]
    train = random.Random(persona.key).sample(train, min(len(train), budget_rows or len(train)))
    kept = train + [r for r in rows if r["split"] != "train"]
    dataset = RowDataset(rows=kept)
    dataset.stored_at(store.put_bytes("persona_datasets", species, dataset.to_bytes(), dataset.suffix))
    # The voice first (the persona's answers), then a little GRPO: the recipe's `persona` stage.
    config = training.config("persona")
    output = train_adapter(
        context,
        artifacts,
        training,
        kind="persona",
        config=config,
        job_cls=RLVRJob,
        run=run_rlvr_job,
        dataset=dataset,
        parent_adapter_uri=parent.adapter_uri,
        parent_version=parent.version,
        replay_rows=[],
        sft_rows=[{"prompt": r["prompt"], "completion_text": r["completion_text"]} for r in train],
        species=species,
    )
    manifest = output.value.model_dump(mode="json")

    # evaluation on the species' held-out encounters (kept out of every dataset), persona rules applied
    held_out = artifacts.load(parent.lineage["encounters_uri"], EncounterSet).by_split("test")
    if not held_out:
        raise Failure(
            description=f"{persona.key}: the species' encounter set has no held-out (test) encounters "
            "to evaluate the persona on; raise test_size in the encounters config",
            allow_retries=False,
        )
    test = [persona_row(outcome_row(e, engine, voice), persona, engine, voice) for e in held_out]
    limit = training.held_out_limit
    if limit is not None and limit < len(test):
        test = sorted(random.Random(f"eval:{persona.key}").sample(test, limit), key=lambda r: r["row_id"])
    cases = [
        EvalCase(row=r, encounter=Encounter.model_validate(r["encounter"]), expert_answer=r["completion_text"])
        for r in test
    ]
    model_path = resolve_model(config.model, training.model_cache_path)
    tokenizer = load_tokenizer(model_path)
    constant = (
        Counter(a for r in train for a in r["top_actions"][:1]).most_common(1)[0][0] if train else rulebook.actions[0]
    )
    results = {name: evaluate_reference(name, cases, constant) for name in ("best_constant", "random_acceptable")}
    base = load_base_model(model_path)  # loaded once; each adapter is put on and taken off again
    for name, uri in (("species_adapter", parent.adapter_uri), ("persona_adapter", manifest["adapter_uri"])):
        context.log.info(f"evaluating {name} on {len(cases)} held-out encounters with {persona.key}'s rules")
        model = PeftModel.from_pretrained(base, str(store.local_path(uri)))
        results[name] = evaluate_variant(model, tokenizer, "direct", cases, [], log=context.log.info)
        base = model.unload()
    metrics = results["persona_adapter"].metrics
    address_share = sum(
        any(a.lower() in (line or "").lower() for a in persona.header.address)
        for line in results["persona_adapter"].lines
    ) / max(1, len(cases))
    manifest = {
        **manifest,
        "npc": npc,
        "persona_version": persona.version,
        "persona_file": str(persona_path(project_files.lore_path, species, npc)),
        "parent_target": parent.target,
        "rules_uri": parent.lineage["rules_uri"],
        "metrics": AdapterMetrics(
            decision_accuracy=metrics.decision_accuracy,
            graded_reward=metrics.graded_reward,
            best_constant_accuracy=results["best_constant"].metrics.decision_accuracy.value,
            random_acceptable_accuracy=results["random_acceptable"].metrics.decision_accuracy.value,
            format_rate=metrics.format_rate,
            guardrail_violations=int(metrics.guardrail_violations.value),
            held_out_encounters=len(cases),
            persona_address_share=address_share,
        ).model_dump(),
    }
    table = comparison_table(results)
    return Output(
        manifest,
        data_version=DataVersion(manifest["version"]),
        metadata={
            **{k: v for k, v in output.metadata.items()},
            "manifest": MetadataValue.json(json.loads(json.dumps(manifest, default=str))),
            "held_out_comparison": MetadataValue.md(
                f"{len(cases)} held-out encounters, {persona.header.name}'s rules\n\n{table}"
            ),
            "persona_address_share": MetadataValue.float(float(address_share)),
            "parent_version": parent.version,
        },
    )


@asset(
    partitions_def=npc_partitions,
    group_name="personas",
    code_version="deployed-persona-1",
    kinds={"duckdb", "python"},
    automation_condition=FRESH,
    description="The persona adapter registered (parent: the species adapter) and deployed blue-green on tier 3 "
    "with the same gates as species adapters and the tier 3 latency budget.",
)
def deployed_persona(
    context: AssetExecutionContext,
    persona_adapter: dict,
    project_files: ProjectFiles,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
    deployment: DeploymentResource,
) -> Output[dict]:
    species, npc = split_persona_key(context.partition_key)
    parent = deployment.open().get(persona_adapter["parent_version"])
    adapter = AdapterVersion(
        version=persona_adapter["version"],
        target=deployment_target(species, npc),
        kind="persona",
        base_model=persona_adapter["base_model"],
        adapter_uri=persona_adapter["adapter_uri"],
        parent_version=persona_adapter["parent_version"],
        lineage={
            "persona_file": persona_adapter["persona_file"],
            "persona_version": persona_adapter["persona_version"],
            "persona_dataset_version": persona_adapter["dataset_version"],
            "rules_uri": persona_adapter["rules_uri"],
            "species_adapter": persona_adapter["parent_version"],
            "species_lore_version": parent.lineage.get("lore_version") if parent else None,
            "species_rules_version": parent.lineage.get("rules_version") if parent else None,
            "lora_rank": training.rlvr_config().lora_r,
        },
        metrics=persona_adapter["metrics"],
    )
    rulebook = artifacts.load(persona_adapter["rules_uri"], CompiledRules).rulebook
    encounter_set = artifacts.load(parent.lineage["encounters_uri"], EncounterSet)
    with input_errors_as_failures():
        persona = load_persona(project_files.lore_path, species, npc, rulebook.actions, project_files.lore_limits)
    latency = measure_candidate_latency(
        artifacts.store(),
        training,
        deployment,
        adapter.adapter_uri,
        encounter_set,
        rulebook.actions,
        persona.introduction(),
    )
    return register_and_deploy(context, deployment, adapter, "persona", latency)
