"""Encounter coverage and splits; SRL and RLVR rows; the asset chain from lore to datasets."""

import io
import json
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_species
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.encounter import GameState
from srl_forge.encounters import EncounterDesigner, assign_split
from srl_forge.player_logs import read_player_logs
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.trajectory import parse_step
from tests.conftest import RULES_ROOT, SPECIES, make_encounter
from tests.test_teachers import programmatic, sampled, setup
from training.outcome_dataset import outcome_row
from training.step_dataset import step_rows


@pytest.mark.parametrize("species", SPECIES)
def test_every_rule_fires_in_at_least_k_encounters(species):
    rulebook = load_rulebook(RULES_ROOT, species)
    encounter_set = EncounterDesigner(rulebook, GameState(), seed=7).design(min_per_rule=3, random_encounters=4)
    assert encounter_set.uncovered == []
    engine = RulesEngine(rulebook)
    for rule in rulebook.rules:
        firing = [e for e in encounter_set.encounters if rule in engine.fired(e.encounter)]
        assert len(firing) >= 3 and encounter_set.coverage[rule.id] == len(firing)


def test_design_is_deterministic_and_split_is_stable():
    rulebook = load_rulebook(RULES_ROOT, "ghoul")
    first = EncounterDesigner(rulebook, GameState(), seed=3).design()
    assert first == EncounterDesigner(rulebook, GameState(), seed=3).design()
    assert first != EncounterDesigner(rulebook, GameState(), seed=4).design()
    for e in first.encounters:
        assert e.split == assign_split(e.encounter_id, 0.15, 0.2)
    splits = [assign_split(f"id-{i}", 0.15, 0.2) for i in range(2000)]
    assert 0.17 < splits.count("test") / 2000 < 0.23


def test_mined_encounters_join_in():
    rulebook = load_rulebook(RULES_ROOT, "zombie")
    mined = make_encounter("zombie", player={"action": "sneak"}, location={"kind": "crypt"})
    encounter_set = EncounterDesigner(rulebook, GameState(), seed=0).design(mined=[mined])
    origin = {e.encounter_id: e.origin for e in encounter_set.encounters}
    assert origin[mined.encounter_id] == "player_log"


def test_srl_rows_are_n_minus_one_with_context_and_target():
    lore, _, engine = setup("werewolf")
    encounter = make_encounter("werewolf", game={"moon_phase": "full"})
    from srl_forge.teachers.collaboration import build_brief

    trajectory = programmatic("werewolf").team.writers[0].write(encounter, build_brief(encounter, engine, lore.dossier))
    rows = step_rows(trajectory, encounter, "train")
    n = len(trajectory.steps)
    assert len(rows) == n - 1 and [r["step_index"] for r in rows] == list(range(2, n + 1))
    for row in rows:
        k = row["step_index"]
        user = row["prompt"][1]["content"]
        assert all(trajectory.step_text(i) in user for i in range(1, k))
        assert trajectory.step_text(k) not in user
        assert f"**{row['expert_title']}**" in user.splitlines()[-1]
        number, title, action = parse_step(row["expert_step"])
        assert (number, title, action) == (k, row["expert_title"], row["expert_action"])


def test_rlvr_rows_carry_the_verifiers_ground_truth():
    _, _, engine = setup("lich")
    encounter = make_encounter("lich", player={"action": "steal"}, location={"kind": "lair"})
    row = outcome_row(sampled(encounter), engine)
    assert row["acceptable_actions"] == ["protect_phylactery"]
    assert "lich.phylactery" in row["fired_rules"]
    assert "expert" not in json.dumps(row["prompt"]).lower()


# --- the asset chain ---------------------------------------------------------------------------

CHAIN = ["lore", "rules", "player_interactions", "encounters", "expert_trajectories", "srl_dataset", "rlvr_dataset"]


@pytest.fixture
def forge(project_copy, tmp_path):
    home = tmp_path / "home"
    defs = build_definitions(home=home, lore_root=project_copy / "lore", rules_root=project_copy / "rules",
                             game_state_seed=project_copy / "game_state" / "seed.yaml")
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")
    return defs, instance, home


def run_chain(defs, instance, species):
    result = materialize(ASSETS, partition_key=species, instance=instance, resources=defs.resources, selection=CHAIN)
    assert result.success
    return result


def read_parquet(home, uri):
    return pq.read_table(io.BytesIO(LocalArtifactStore(home / "artifacts").get_bytes(uri))).to_pylist()


def test_chain_materializes_and_never_leaks_held_out_encounters(forge):
    defs, instance, home = forge
    result = run_chain(defs, instance, "vampire")
    encounters = LocalArtifactStore(home / "artifacts").get_json(result.output_for_node("encounters")["uri"])
    test_ids = {e["encounter_id"] for e in encounters["encounters"] if e["split"] == "test"}
    assert test_ids
    srl = read_parquet(home, result.output_for_node("srl_dataset")["uri"])
    rlvr = read_parquet(home, result.output_for_node("rlvr_dataset")["uri"])
    assert srl and rlvr
    assert {r["split"] for r in srl} <= {"train", "validation"} and {r["split"] for r in rlvr} <= {"train", "validation"}
    assert not test_ids & {r["encounter_id"] for r in srl}
    assert not test_ids & {r["encounter_id"] for r in rlvr}
    trajectories = instance.get_latest_materialization_event(AssetKey("expert_trajectories")).asset_materialization
    assert trajectories.metadata["accepted"].value > 10
    assert trajectories.metadata["llm_calls"].value == 0


def test_unchanged_inputs_give_the_same_versions(forge):
    defs, instance, _ = forge

    def versions():
        return {k: instance.get_latest_materialization_event(AssetKey(k)).asset_materialization.tags["dagster/data_version"]
                for k in CHAIN}

    run_chain(defs, instance, "ghoul")
    first = versions()
    run_chain(defs, instance, "ghoul")
    assert versions() == first


def test_player_logs_are_mined_into_encounters(forge):
    defs, instance, home = forge
    encounter = make_encounter("zombie", player={"action": "sneak", "utterance": "shh"}, location={"kind": "ruins"})
    folder = home / "player_logs" / "zombie"
    folder.mkdir(parents=True)
    record = {"timestamp": datetime.now(timezone.utc).isoformat(), "species": "zombie", "player_id": "p1",
              "encounter": json.loads(encounter.model_dump_json()), "npc_action": "pursue", "npc_line": "Rrgh"}
    (folder / "day1.jsonl").write_text(json.dumps(record) + "\n{broken json\n")
    records, problems = read_player_logs(home / "player_logs", "zombie")
    assert len(records) == 1 and problems[0][0].endswith("day1.jsonl:2")
    run_chain(defs, instance, "zombie")
    meta = instance.get_latest_materialization_event(AssetKey("encounters")).asset_materialization.metadata
    assert meta["mined_from_player_logs"].value == 1
    interactions = instance.get_latest_materialization_event(AssetKey("player_interactions")).asset_materialization
    assert interactions.metadata["unreadable_records"].value == 1


@pytest.mark.parametrize("species", SPECIES)
def test_held_out_split_is_large_enough(species):
    rulebook = load_rulebook(RULES_ROOT, species)
    encounter_set = EncounterDesigner(rulebook, GameState(), seed=0).design(min_test_encounters=8)
    assert len(encounter_set.by_split("test")) >= 8
    assert all(e.split == assign_split(e.encounter_id, 0.15, 0.2) for e in encounter_set.encounters)
