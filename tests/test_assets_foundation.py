"""Materializing lore and rules for a species partition on an ephemeral instance."""

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_species
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.game_state import GameStateStore
from srl_forge.rulebook import CompiledRules


@pytest.fixture
def forge(project_copy, tmp_path):
    defs = build_definitions(
        home=tmp_path / "home",
        lore_root=project_copy / "lore",
        rules_root=project_copy / "rules",
        game_state_seed=project_copy / "game_state" / "seed.yaml",
    )
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")
    return defs, instance, project_copy, tmp_path / "home"


def run(defs, instance, species, selection=("lore", "rules")):
    return materialize(
        ASSETS,
        partition_key=species,
        instance=instance,
        resources=defs.resources,
        selection=list(selection),
        raise_on_error=False,
    )


def latest(instance, key, species):
    event = instance.get_latest_materialization_event(AssetKey(key))
    assert event.asset_materialization.partition == species
    return event.asset_materialization


def test_materialize_lore_and_rules(forge):
    defs, instance, _, home = forge
    result = run(defs, instance, "werewolf")
    assert result.success
    lore = latest(instance, "lore", "werewolf")
    rules = latest(instance, "rules", "werewolf")
    assert lore.metadata["documents"].value == 7
    assert lore.metadata["memory_chunks"].value > 20
    assert rules.metadata["rules"].value == 14
    assert lore.tags["dagster/data_version"] == lore.metadata["content_hash"].value
    # downstream steps receive the typed value, read back from the stored version
    compiled = result.output_for_node("rules")
    assert isinstance(compiled, CompiledRules)
    assert compiled.rulebook.species == "werewolf" and compiled.game_state.time_of_day == "night"
    stored = CompiledRules.model_validate(
        LocalArtifactStore(home / "artifacts").get_json(rules.metadata["artifact_uri"].value)
    )
    assert stored == compiled and rules.metadata["content_hash"].value == compiled.artifact_version


def test_live_event_changes_rules_version(forge):
    defs, instance, _, home = forge
    assert run(defs, instance, "vampire").success
    before = latest(instance, "rules", "vampire")
    GameStateStore(home / "game_state.duckdb").set_event("blood_moon", True)
    assert run(defs, instance, "vampire", ["rules"]).success
    after = latest(instance, "rules", "vampire")
    assert after.tags["dagster/data_version"] != before.tags["dagster/data_version"]
    assert after.metadata["active_rules"].value == before.metadata["active_rules"].value + 2


def test_bad_lore_fails_clearly_and_keeps_the_previous_version(forge):
    defs, instance, project, home = forge
    assert run(defs, instance, "ghoul").success
    good = latest(instance, "lore", "ghoul")
    good_uri = good.metadata["artifact_uri"].value
    (project / "lore" / "ghoul" / "decisions.md").write_text("---\ntitle: Broken\n---\nno topic")
    result = run(defs, instance, "ghoul")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "decisions.md" in message and "'topic'" in message
    assert latest(instance, "lore", "ghoul").tags == good.tags
    assert LocalArtifactStore(home / "artifacts").exists(good_uri)


def test_invalid_rule_fails_and_keeps_previous_rules(forge):
    defs, instance, project, _ = forge
    assert run(defs, instance, "lich").success
    good = latest(instance, "rules", "lich")
    path = project / "rules" / "lich.yaml"
    path.write_text(path.read_text().replace("require: [protect_phylactery]", "require: [teleport]"))
    result = run(defs, instance, "lich", ["rules"])
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "lich.yaml" in message and "rules[lich.phylactery].require" in message and "teleport" in message
    assert latest(instance, "rules", "lich").tags == good.tags


def test_new_species_folder_registers_a_partition(forge):
    _, instance, project, _ = forge
    (project / "lore" / "banshee").mkdir()
    assert register_species(instance, project / "lore") == ["banshee"]
    assert register_species(instance, project / "lore") == []
    assert "banshee" in instance.get_dynamic_partitions("species")


def test_definitions_load_and_declare_what_the_ui_needs():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.partitions_def is not None, key
        assert node.group_name and node.group_name != "default", key
        assert node.code_version, key
        assert {k for k in node.tags if k.startswith("dagster/kind/")}, key
    assert defs.resolve_job_def("species_pipeline")
