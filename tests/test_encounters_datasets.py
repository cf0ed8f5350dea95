"""Encounter coverage and splits; SRL and RLVR rows; the asset chain from lore to datasets."""

import io
import json
import shutil
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from srl_assets.chains import DATA_CHAIN
from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_species
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.encounter import GameState
from srl_forge.encounters import DesignSpec, EncounterDesigner, assign_split
from srl_forge.grading import task_profile
from srl_forge.player_logs import read_player_logs
from srl_forge.policy import parse_step
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import build_brief
from srl_forge.teachers.lines import Voice
from tests.helpers import (
    RULES_ROOT,
    SPECIES,
    make_encounter,
    programmatic_teachers,
    sampled_encounter,
    species_setup,
)
from training.outcome_dataset import OutcomeRow, outcome_row
from training.step_dataset import from_parquet, names_next_title, step_rows, to_parquet

SMALL = DesignSpec(train_size=40, validation_size=10, test_size=10, min_per_rule=3)


@pytest.mark.parametrize("species", SPECIES)
def test_every_rule_fires_in_at_least_k_encounters(species):
    rulebook = load_rulebook(RULES_ROOT, species)
    encounter_set = EncounterDesigner(rulebook, GameState(), seed=7).design(SMALL)
    assert encounter_set.uncovered == []
    engine = RulesEngine(rulebook)
    for rule in rulebook.rules:
        firing = [e for e in encounter_set.encounters if rule in engine.fired(e.encounter)]
        assert len(firing) >= 3 and encounter_set.coverage[rule.id] == len(firing)


def test_design_is_deterministic_and_split_is_stable():
    rulebook = load_rulebook(RULES_ROOT, "ghoul")
    first = EncounterDesigner(rulebook, GameState(), seed=3).design(SMALL)
    assert first == EncounterDesigner(rulebook, GameState(), seed=3).design(SMALL)
    assert first != EncounterDesigner(rulebook, GameState(), seed=4).design(SMALL)
    # the split is a function of the scenario: near-misses sit in their partner's split, in every run
    for e in first.encounters:
        assert e.split == assign_split(e.scenario_id, SMALL.validation_fraction, SMALL.test_fraction)
    by_id = {e.encounter_id: e for e in first.encounters}
    assert all(by_id[e.near_miss_of].split == e.split for e in first.encounters if e.near_miss_of)
    splits = [assign_split(f"id-{i}", 0.15, 0.2) for i in range(2000)]
    assert 0.17 < splits.count("test") / 2000 < 0.23


@pytest.mark.parametrize("species", SPECIES)
def test_default_design_is_balanced_contested_and_has_near_misses(species):
    rulebook = load_rulebook(RULES_ROOT, species)
    engine = RulesEngine(rulebook)
    spec = DesignSpec()
    encounter_set = EncounterDesigner(rulebook, GameState(), seed=0).design(spec)
    by_id = {e.encounter_id: e for e in encounter_set.encounters}
    for split in ("train", "validation", "test"):
        items = encounter_set.by_split(split)
        assert len(items) == spec.size(split)
        profile = task_profile(e.label for e in items)
        assert profile["max_top_share"] <= spec.max_top_share  # no action dominates a split
        assert profile["open_share"] <= spec.max_open_share  # everything-acceptable is a small minority
        assert profile["contested_share"] >= 0.4
        pairs = [e for e in items if e.near_miss_of]
        assert len(pairs) >= 0.1 * len(items)
        for e in pairs:  # one feature flipped, and it changes the engine's top action
            partner = by_id[e.near_miss_of].encounter
            assert (
                set(engine.decide(partner).acceptable) != set()
                and e.label.top_actions != by_id[e.near_miss_of].label.top_actions
            )
            a, b = partner.model_dump(), e.encounter.model_dump()
            changed = [f"{s}.{k}" for s in a for k in a[s] if a[s][k] != b[s][k] and k != "utterance"]
            assert len(changed) == 1 and e.flipped.startswith(changed[0]), (changed, e.flipped)


def test_a_new_species_gets_a_full_balanced_task(tmp_path):
    shutil.copy(RULES_ROOT / "global.yaml", tmp_path / "global.yaml")
    (tmp_path / "banshee.yaml").write_text("""species: banshee
actions: [wail, foretell, vanish]
rules:
  - {id: banshee.incorporeal, source: banshee/lore, description: A spirit cannot strike., priority: 60,
     forbid: [attack]}
  - {id: banshee.dawn, source: banshee/lore, description: Gone by dawn., priority: 80,
     when: {game.time_of_day: {in: [dawn, day]}}, require: [vanish]}
  - {id: banshee.doomed, source: banshee/lore, description: Wails for the doomed., priority: 50,
     when: {npc.hunger: {gte: 0.5}}, prefer: [wail]}
  - {id: banshee.asked, source: banshee/lore, description: Answers questions with fate., priority: 40,
     when: {player.action: talk}, prefer: [foretell]}
""")
    rulebook = load_rulebook(tmp_path, "banshee")
    encounter_set = EncounterDesigner(rulebook, GameState(), seed=0).design()
    for split, size in (("train", 300), ("validation", 60), ("test", 60)):
        items = encounter_set.by_split(split)
        assert len(items) == size and task_profile(e.label for e in items)["max_top_share"] <= 0.28


def test_mined_encounters_join_in():
    rulebook = load_rulebook(RULES_ROOT, "zombie")
    mined = make_encounter("zombie", player={"action": "sneak"}, location={"kind": "crypt"})
    encounter_set = EncounterDesigner(rulebook, GameState(), seed=0).design(SMALL, mined=[mined])
    origin = {e.encounter_id: e.origin for e in encounter_set.encounters}
    assert origin[mined.encounter_id] == "player_log"


def test_srl_rows_are_n_minus_one_with_context_and_target():
    lore, _, engine = species_setup("werewolf")
    encounter = make_encounter("werewolf", game={"moon_phase": "full"})

    trajectory = (
        programmatic_teachers("werewolf").team.writers[0].write(encounter, build_brief(encounter, engine, lore.dossier))
    )
    rows = step_rows(trajectory, encounter, "train", top_actions=("flee",))
    n = len(trajectory.steps)
    assert len(rows) == n - 1 and [r["step_index"] for r in rows] == list(range(2, n + 1))
    for row in rows:
        k = row["step_index"]
        user = row["prompt"][1]["content"]
        assert all(trajectory.step_text(i) in user for i in range(1, k))
        assert trajectory.step_text(k) not in user
        ask = user.splitlines()[-1]
        assert ask in (f"Write step {k}, a **{row['expert_title']}** step.", f"Write step {k}.")
        number, title, action = parse_step(row["expert_step"])
        assert (number, title, action) == (k, row["expert_title"], row["expert_action"])
        assert row["top_actions"] == ["flee"]
    # the next title is named in a stable share of rows: always, never, and about half by default
    assert all(
        "**" in r["prompt"][1]["content"].splitlines()[-1]
        for r in step_rows(trajectory, encounter, "train", next_title_share=1.0)
    )
    assert not any(
        "**" in r["prompt"][1]["content"].splitlines()[-1]
        for r in step_rows(trajectory, encounter, "train", next_title_share=0.0)
    )
    named = [names_next_title(f"e{i}:{k}", 0.5) for i in range(200) for k in range(2, 6)]
    assert 0.4 < sum(named) / len(named) < 0.6 and named == [
        names_next_title(f"e{i}:{k}", 0.5) for i in range(200) for k in range(2, 6)
    ]


def test_rlvr_rows_carry_the_verifiers_ground_truth():
    _, _, engine = species_setup("lich")
    encounter = make_encounter("lich", player={"action": "steal"}, location={"kind": "lair"})
    voice = Voice(species="lich", address=("mortal",), intents={}, stock_lines=("Another age, {foe}.",))
    row = outcome_row(sampled_encounter(encounter), engine, voice)
    assert row["acceptable_actions"] == ["protect_phylactery"] and row["top_actions"] == ["protect_phylactery"]
    # native parquet columns, read back with attributes (no JSON strings)
    (stored,) = from_parquet(to_parquet([row]))
    typed = OutcomeRow.model_validate(stored)
    scores = typed.score_of()
    assert scores["protect_phylactery"] == 1.0 and scores["flee"] == 0.0 and set(scores) == set(engine.vocabulary)
    assert "lair" in typed.grounding_terms["place"] and typed.stock_lines == ["Another age, villager."]
    assert typed.encounter == encounter and typed.dialogue_constraints == engine.decide(encounter).dialogue
    assert not [c for c in stored if c.endswith("_json")]
    assert "lich.phylactery" in row["fired_rules"]
    assert "expert" not in json.dumps(row["prompt"]).lower()


def test_rows_stored_with_json_columns_read_back_native():
    """A dataset written before the columns were native (a replay of it) reads as the new rows do."""
    _, _, engine = species_setup("lich")
    encounter = make_encounter("lich", player={"action": "steal"}, location={"kind": "lair"})
    row = outcome_row(sampled_encounter(encounter), engine)
    decision = engine.decide(encounter)
    legacy = {
        **{
            k: v
            for k, v in row.items()
            if k not in ("encounter", "action_scores", "dialogue_constraints", "grounding_terms")
        },
        "encounter_json": encounter.model_dump_json(),
        "action_scores_json": json.dumps({s["action"]: s["score"] for s in row["action_scores"]}),
        "dialogue_constraints_json": decision.dialogue.model_dump_json(),
        "grounding_terms_json": json.dumps({k: v for k, v in row["grounding_terms"].items() if v}),
    }
    (upgraded,) = from_parquet(to_parquet([legacy]))
    assert OutcomeRow.model_validate(upgraded) == OutcomeRow.model_validate(row)


# --- the asset chain ---------------------------------------------------------------------------

CHAIN = DATA_CHAIN


@pytest.fixture
def forge(project_copy, tmp_path):
    home = tmp_path / "home"
    defs = build_definitions(
        home=home,
        lore_root=project_copy / "lore",
        rules_root=project_copy / "rules",
        game_state_seed=project_copy / "game_state" / "seed.yaml",
    )
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")
    return defs, instance, home


# for tests of behaviour that does not depend on the task's size (determinism, mining): a seventh of the work
SMALL_ENCOUNTERS = {"ops": {"encounters": {"config": {"train_size": 40, "validation_size": 15, "test_size": 15}}}}


def run_chain(defs, instance, species, run_config=None):
    result = materialize(
        ASSETS,
        partition_key=species,
        instance=instance,
        resources=defs.resources,
        selection=CHAIN,
        run_config=run_config,
    )
    assert result.success
    return result


def latest_uri(instance, asset: str) -> str:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    return event.asset_materialization.metadata["artifact_uri"].value


def read_parquet(home, uri):
    return pq.read_table(io.BytesIO(LocalArtifactStore(home / "artifacts").get_bytes(uri))).to_pylist()


def test_chain_materializes_and_never_leaks_held_out_encounters(forge):
    defs, instance, home = forge
    result = run_chain(defs, instance, "vampire")
    test_ids = {e.encounter_id for e in result.output_for_node("encounters").by_split("test")}
    assert test_ids
    srl = read_parquet(home, latest_uri(instance, "srl_dataset"))
    rlvr = read_parquet(home, latest_uri(instance, "rlvr_dataset"))
    assert srl and rlvr
    assert {r["split"] for r in srl} <= {"train", "validation"} and {r["split"] for r in rlvr} <= {
        "train",
        "validation",
    }
    assert not test_ids & {r["encounter_id"] for r in srl}
    assert not test_ids & {r["encounter_id"] for r in rlvr}
    trajectories = instance.get_latest_materialization_event(AssetKey("expert_trajectories")).asset_materialization
    assert trajectories.metadata["accepted"].value > 10
    assert trajectories.metadata["llm_calls"].value == 0


def test_unchanged_inputs_give_the_same_versions(forge):
    defs, instance, _ = forge

    def versions():
        return {
            k: instance.get_latest_materialization_event(AssetKey(k)).asset_materialization.tags["dagster/data_version"]
            for k in CHAIN
        }

    run_chain(defs, instance, "ghoul", SMALL_ENCOUNTERS)
    first = versions()
    run_chain(defs, instance, "ghoul", SMALL_ENCOUNTERS)
    assert versions() == first


def test_player_logs_are_mined_into_encounters(forge):
    defs, instance, home = forge
    encounter = make_encounter("zombie", player={"action": "sneak", "utterance": "shh"}, location={"kind": "ruins"})
    folder = home / "player_logs" / "zombie"
    folder.mkdir(parents=True)
    record = {
        "timestamp": datetime.now(UTC).isoformat(),
        "species": "zombie",
        "player_id": "p1",
        "encounter": json.loads(encounter.model_dump_json()),
        "npc_action": "pursue",
        "npc_line": "Rrgh",
    }
    (folder / "day1.jsonl").write_text(json.dumps(record) + "\n{broken json\n")
    records, problems = read_player_logs(home / "player_logs", "zombie")
    assert len(records) == 1 and problems[0][0].endswith("day1.jsonl:2")
    run_chain(defs, instance, "zombie", SMALL_ENCOUNTERS)
    meta = instance.get_latest_materialization_event(AssetKey("encounters")).asset_materialization.metadata
    assert meta["mined_from_player_logs"].value == 1
    interactions = instance.get_latest_materialization_event(AssetKey("player_interactions")).asset_materialization
    assert interactions.metadata["unreadable_records"].value == 1
