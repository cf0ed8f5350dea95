"""Training assets on tiny budgets: SRL lineage across materializations, SRL→RLVR from the SRL adapter,
the ablations (SFT-only, RLVR-only), the held-out evaluation tables, and a deployment that holds back an
adapter which has not learned. Versions are never overwritten."""

from dagster import AssetKey, DagsterInstance, materialize

from asset_checks import CHECKS
from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_personas, register_species
from srl_assets.resources import DeploymentResource, TrainingResource
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.registry import open_registry
from tests.helpers import has_row
from tests.tiny_policy import TINY_TRAINING

UPSTREAM = ["lore", "rules", "player_interactions", "encounters", "expert_trajectories", "srl_dataset", "rlvr_dataset"]
TRAINING = ["srl_checkpoint", "rlvr_checkpoint", "evaluation"]
ABLATIONS = ["sft_only_checkpoint", "rlvr_only_checkpoint", "ablation_evaluation"]
DEPLOYMENT = ["deployed_adapter", "persona_adapter", "deployed_persona"]


def test_training_chain_lineage_and_evaluation(project_copy, tmp_path, tiny_policy, model_cache):
    home = tmp_path / "home"
    defs = build_definitions(
        home=home,
        lore_root=project_copy / "lore",
        rules_root=project_copy / "rules",
        game_state_seed=project_copy / "game_state" / "seed.yaml",
    )
    resources = dict(defs.resources)
    resources["training"] = TrainingResource(
        model=tiny_policy,
        # a few supervised steps of the ~2,000 step rows: the chain is what is tested here, not learning
        srl_overrides={**TINY_TRAINING, "sft_epochs": 0.02},
        rlvr_overrides=TINY_TRAINING,
        evaluation_encounters=6,
        evaluation_step_rows=4,
        work_root=str(home / "training"),
        model_cache=str(model_cache),
    )
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        f"tiers:\n  tier1: {{base_model: '{tiny_policy}', serves: species, ttft_budget_ms: 60000}}\n"
        f"  tier3: {{base_model: '{tiny_policy}', serves: persona, ttft_budget_ms: 60000}}\n"
    )
    resources["deployment"] = DeploymentResource(
        registry=str(home / "registry.duckdb"), tiers_file=str(tiers), latency_prompts=2
    )
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")

    def run(selection, partition="zombie"):
        result = materialize(
            [*ASSETS, *CHECKS], partition_key=partition, instance=instance, resources=resources, selection=selection
        )
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())
        return {
            k: instance.get_latest_materialization_event(AssetKey(k)).asset_materialization
            for k in TRAINING + ABLATIONS + DEPLOYMENT
            if k in selection
        }

    first = run(UPSTREAM + TRAINING + ABLATIONS + ["deployed_adapter"])
    srl = first["srl_checkpoint"].metadata["manifest"].value
    assert srl["parent_version"] is None
    assert first["srl_checkpoint"].metadata["reward_curve"].value.startswith("![reward curve](data:image/png;base64,")
    assert first["rlvr_checkpoint"].metadata["manifest"].value["parent_version"] == srl["version"]
    assert "learning_curve" in first["srl_checkpoint"].metadata and has_row(
        first["srl_checkpoint"].metadata["learning_curve_table"].value, "start", "0"
    )
    for ablation in ("rlvr_only_checkpoint", "sft_only_checkpoint"):
        assert first[ablation].metadata["manifest"].value["parent_version"] is None
    assert first["sft_only_checkpoint"].metadata["grpo_steps"].value == 0
    evaluation = first["evaluation"].metadata
    table = evaluation["comparison"].value
    assert all(
        has_row(table, v)
        for v in ("base", "srl", "srl_rlvr", "best_constant", "random_acceptable", "feature_classifier", "rules_engine")
    )
    assert not has_row(table, "rlvr_only")  # the ablations are ablation_evaluation's
    assert 0.0 <= evaluation["srl_rlvr_decision_accuracy"].value <= 1.0
    assert evaluation["held_out_encounters"].value == 6 and evaluation["held_out_total"].value == 60
    assert "6 of 60 held-out encounters (a fixed, seeded subset)" in evaluation["comparison"].value
    # the ceiling is the ceiling: the engine's own answers are always right and grounded
    assert evaluation["rules_engine_decision_accuracy"].value == 1.0
    assert evaluation["rules_engine_line_grounding"].value == 1.0
    # the feature classifier is fitted on train; zombie's rules are simple enough for a tree on most encounters
    assert evaluation["feature_classifier_decision_accuracy"].value >= 0.5
    full = first["ablation_evaluation"].metadata["comparison"].value
    assert all(has_row(full, v) for v in ("sft_only", "rlvr_only", "srl_rlvr", "feature_classifier"))

    # deployment: a tiny untrained policy has learned nothing, so even with no blue it is held in green
    deployed = first["deployed_adapter"].metadata
    rlvr_version = first["rlvr_checkpoint"].metadata["manifest"].value["version"]
    assert deployed["candidate_version"].value == rlvr_version
    assert deployed["failing_gates"].value == ["beats_references"]
    assert has_row(deployed["outcome"].value, "tier1", "held")
    registry = open_registry(home / "registry.duckdb")
    assert registry.blue("zombie", "tier1") is None and registry.green("zombie", "tier1") == rlvr_version
    # (for the persona below, a person's decision stands in for an adapter that learned)
    registry.promote("zombie", "tier1", rlvr_version, [], "test", "test set-up: a species blue for the persona")
    chain = registry.lineage(rlvr_version)
    assert [a.kind for a in chain] == ["srl_rlvr", "srl"] and chain[1].version == srl["version"]
    assert any(d.startswith("zombie/") for d in chain[0].lineage["lore_documents"])
    assert chain[0].lineage["rules"] and chain[0].metrics.decision_accuracy.high >= 0

    # Tier 3: a persona file trains that NPC's adapter on top of the species' blue adapter, and deploys it
    npcs = project_copy / "lore" / "zombie" / "npcs"
    npcs.mkdir()
    (npcs / "old_gregor.md").write_text(
        "---\nname: Old Gregor\ntitle: the gravedigger who rose\nforbid: [flee]\n---\n"
        "He still tends the graves he now sleeps in, and never leaves them.\n"
    )

    assert "zombie/old_gregor" in register_personas(instance, project_copy / "lore")
    persona = run(["persona_adapter", "deployed_persona"], partition="zombie/old_gregor")
    manifest = persona["persona_adapter"].metadata["manifest"].value
    assert manifest["parent_version"] == rlvr_version and manifest["npc"] == "old_gregor"
    assert has_row(persona["persona_adapter"].metadata["held_out_comparison"].value, "persona_adapter")
    assert manifest["metrics"]["held_out_encounters"] > 0  # the species' held-out encounters, kept out of datasets
    # the same gates: an untrained persona is held in green too, with its lineage recorded
    assert registry.blue("zombie/old_gregor", "tier3") is None
    persona_version = registry.green("zombie/old_gregor", "tier3")
    assert persona_version == manifest["version"] != rlvr_version
    assert persona["deployed_persona"].metadata["failing_gates"].value == ["beats_references"]
    assert [a.version for a in registry.lineage(persona_version)] == [persona_version, rlvr_version, srl["version"]]
    assert registry.blue("zombie", "tier1") == rlvr_version  # the species slot is untouched

    store = LocalArtifactStore(home / "artifacts")
    adapter = store.path_for(srl["adapter_uri"])
    files_before = {p.name: p.read_bytes() for p in adapter.iterdir()}
    second = run(["srl_checkpoint"])
    lineage = second["srl_checkpoint"].metadata["manifest"].value
    assert lineage["parent_version"] == srl["version"] and lineage["version"] != srl["version"]
    assert {p.name: p.read_bytes() for p in adapter.iterdir()} == files_before  # the parent is intact
    assert "Parent adapter: `" + str(adapter) in (store.path_for(lineage["adapter_uri"]) / "README.md").read_text()
