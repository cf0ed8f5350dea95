"""Training assets on tiny budgets: SRL lineage across materializations, SRL→RLVR from the SRL adapter,
the RLVR-only ablation, and the held-out evaluation table. Versions are never overwritten."""

import json

from dagster import AssetKey, DagsterInstance, materialize

from asset_checks import CHECKS
from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_species
from srl_assets.resources import TrainingResource
from srl_forge.artifacts import LocalArtifactStore
from tests.test_srl_training import TINY

UPSTREAM = ["lore", "rules", "player_interactions", "encounters", "expert_trajectories", "srl_dataset", "rlvr_dataset"]
TRAINING = ["srl_checkpoint", "rlvr_checkpoint", "rlvr_only_checkpoint", "evaluation"]


def test_training_chain_lineage_and_evaluation(project_copy, tmp_path, tiny_policy, model_cache):
    home = tmp_path / "home"
    defs = build_definitions(home=home, lore_root=project_copy / "lore", rules_root=project_copy / "rules",
                             game_state_seed=project_copy / "game_state" / "seed.yaml")
    resources = dict(defs.resources)
    resources["training"] = TrainingResource(
        model=tiny_policy, config_overrides_json=json.dumps(TINY), rlvr_overrides_json=json.dumps(TINY),
        evaluation_encounters=6, evaluation_step_rows=4, work_root=str(home / "training"), model_cache=str(model_cache))
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")

    def run(selection):
        result = materialize([*ASSETS, *CHECKS], partition_key="zombie", instance=instance, resources=resources,
                             selection=selection)
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())
        return {k: instance.get_latest_materialization_event(AssetKey(k)).asset_materialization
                for k in TRAINING if k in selection}

    first = run(UPSTREAM + TRAINING)
    srl = first["srl_checkpoint"].metadata["manifest"].value
    assert srl["parent_version"] is None
    assert first["srl_checkpoint"].metadata["reward_curve"].value.startswith("![reward curve](data:image/png;base64,")
    assert first["rlvr_checkpoint"].metadata["manifest"].value["parent_version"] == srl["version"]
    assert first["rlvr_only_checkpoint"].metadata["manifest"].value["parent_version"] is None
    evaluation = first["evaluation"].metadata
    table = evaluation["comparison"].value
    assert all(f"| {v} |" in table for v in ("base", "srl", "rlvr_only", "srl_rlvr", "best_constant",
                                             "random_acceptable", "rules_engine"))
    assert 0.0 <= evaluation["srl_rlvr_decision_accuracy"].value <= 1.0
    assert evaluation["held_out_encounters"].value == 6 and evaluation["held_out_total"].value == 60
    assert "6 of 60 held-out encounters (a fixed, seeded subset)" in evaluation["comparison"].value
    # the ceiling is the ceiling: the engine's own answers are always right and grounded
    assert evaluation["rules_engine_decision_accuracy"].value == 1.0
    assert evaluation["rules_engine_line_grounding"].value == 1.0

    store = LocalArtifactStore(home / "artifacts")
    adapter = store.path_for(srl["adapter_uri"])
    files_before = {p.name: p.read_bytes() for p in adapter.iterdir()}
    second = run(["srl_checkpoint"])
    lineage = second["srl_checkpoint"].metadata["manifest"].value
    assert lineage["parent_version"] == srl["version"] and lineage["version"] != srl["version"]
    assert {p.name: p.read_bytes() for p in adapter.iterdir()} == files_before  # the parent is intact
    assert "Parent adapter: `" + str(adapter) in (store.path_for(lineage["adapter_uri"]) / "README.md").read_text()
