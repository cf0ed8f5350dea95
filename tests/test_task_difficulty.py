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
from tests.helpers import RULES_ROOT, SPECIES, has_row


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


def _project(project_copy, tmp_path):
    """The project copy's definitions and an instance that knows its species."""
    defs = build_definitions(
        home=tmp_path / "home",
        lore_root=project_copy / "lore",
        rules_root=project_copy / "rules",
        game_state_seed=project_copy / "game_state" / "seed.yaml",
    )
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")
    return defs, instance


def test_check_fails_an_easy_task_and_stops_downstream(project_copy, tmp_path):
    (project_copy / "rules" / "vampire.yaml").write_text(EASY_RULES)
    defs, instance = _project(project_copy, tmp_path)
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


def test_split_sizes_are_the_ones_the_encounters_were_designed_with(project_copy, tmp_path):
    defs, instance = _project(project_copy, tmp_path)
    sizes = {"train_size": 90, "validation_size": 24, "test_size": 24}

    def difficulty(check_config):
        result = materialize(
            [*ASSETS, *CHECKS],
            partition_key="zombie",
            instance=instance,
            resources=defs.resources,
            selection=["lore", "rules", "player_interactions", "encounters"],
            run_config={
                "ops": {
                    "encounters": {"config": sizes},
                    "encounters_task_difficulty": {"config": check_config},
                }
            },
            raise_on_error=False,
        )
        key = AssetCheckKey(AssetKey("encounters"), "task_difficulty")
        return next(e for e in result.get_asset_check_evaluations() if e.asset_check_key == key)

    designed = difficulty({})
    assert designed.passed, designed.metadata["failures"].value  # 90/24/24 asked for, 90/24/24 required
    assert has_row(designed.metadata["difficulty"].value, "train", "90", "90")
    stricter = difficulty({"min_test": 60})  # a studio's own floor still holds
    assert not stricter.passed and "test: 24 encounters < 60" in stricter.metadata["failures"].value
