"""The srl_checkpoint asset: warm-start lineage across materializations; versions never overwritten."""

import json

from dagster import AssetKey, DagsterInstance, materialize

from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_species
from srl_assets.resources import TrainingResource
from srl_forge.artifacts import LocalArtifactStore
from tests.test_srl_training import TINY

CHAIN = ["lore", "rules", "encounters", "expert_trajectories", "srl_dataset", "srl_checkpoint"]


def test_srl_checkpoint_lineage(project_copy, tmp_path, tiny_policy, model_cache):
    home = tmp_path / "home"
    defs = build_definitions(home=home, lore_root=project_copy / "lore", rules_root=project_copy / "rules",
                             game_state_seed=project_copy / "game_state" / "seed.yaml")
    resources = dict(defs.resources)
    resources["training"] = TrainingResource(model=tiny_policy, config_overrides_json=json.dumps(TINY),
                                             work_root=str(home / "training"), model_cache=str(model_cache))
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")

    def run(selection):
        result = materialize(ASSETS, partition_key="zombie", instance=instance, resources=resources,
                             selection=selection)
        assert result.success
        return instance.get_latest_materialization_event(AssetKey("srl_checkpoint")).asset_materialization

    first = run(CHAIN)
    manifest = first.metadata["manifest"].value
    assert manifest["parent_version"] is None
    assert first.metadata["validation_similarity_before"].value >= -1.0
    assert first.metadata["reward_curve"].value.startswith("![reward curve](data:image/png;base64,")
    store = LocalArtifactStore(home / "artifacts")
    adapter = store.path_for(manifest["adapter_uri"])
    files_before = {p.name: p.read_bytes() for p in adapter.iterdir()}

    second = run(["srl_checkpoint"])
    lineage = second.metadata["manifest"].value
    assert lineage["parent_version"] == manifest["version"]
    assert lineage["version"] != manifest["version"]
    assert {p.name: p.read_bytes() for p in adapter.iterdir()} == files_before  # the parent is intact
    assert "Parent adapter: `" + str(adapter) in (store.path_for(lineage["adapter_uri"]) / "README.md").read_text()
