"""The task-difficulty check: trivial policies must not solve the designed task, and it says so when they do."""

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from asset_checks import CHECKS
from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_species
from srl_forge.encounter import GameState
from srl_forge.encounters import EncounterDesigner, task_difficulty_report
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from tests.helpers import RULES_ROOT, SPECIES


@pytest.mark.parametrize("species", SPECIES)
def test_shipped_species_are_not_solved_by_trivial_policies(species):
    rulebook = load_rulebook(RULES_ROOT, species)
    report = task_difficulty_report(EncounterDesigner(rulebook, GameState(), seed=0).design(), RulesEngine(rulebook))
    for split, r in report.items():
        assert r["best_constant"]["accuracy"] <= 0.35, (split, r["best_constant"])
        assert r["random_acceptable"]["accuracy"] <= 0.7, (split, r["random_acceptable"])
        # the random acceptable policy is measured, not assumed: it beats nothing and never exceeds the ceiling
        assert 0.0 < r["random_acceptable"]["accuracy"] < 1.0


EASY_RULES = """species: vampire
actions: [feed, charm, request_invitation, seek_shelter, recoil]
rules:
  - id: vampire.always_shelter
    source: vampire/weaknesses
    description: Whatever happens, the vampire shelters.
    priority: 90
    require: [seek_shelter]
"""


def test_check_fails_an_easy_task_and_stops_downstream(project_copy, tmp_path):
    (project_copy / "rules" / "vampire.yaml").write_text(EASY_RULES)
    defs = build_definitions(
        home=tmp_path / "home",
        lore_root=project_copy / "lore",
        rules_root=project_copy / "rules",
        game_state_seed=project_copy / "game_state" / "seed.yaml",
    )
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")
    result = materialize(
        [*ASSETS, *CHECKS],
        partition_key="vampire",
        instance=instance,
        resources=defs.resources,
        selection=["lore", "rules", "player_interactions", "encounters", "expert_trajectories"],
        run_config={"ops": {"encounters": {"config": {"max_top_share": 1.0}}}},
        raise_on_error=False,
    )
    key = AssetCheckKey(AssetKey("encounters"), "task_difficulty")
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key == key)
    assert not evaluation.passed
    failures = evaluation.metadata["failures"].value
    assert any("always 'seek_shelter' hits the top action in 1.00 > 0.35" in f for f in failures), failures
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "encounters" in materialized and "expert_trajectories" not in materialized
