"""Evaluation metrics on hand-made answers: the references order as they must, intervals cover the
point, and the line metrics tell a varied speaker from a parrot."""

import pytest

from srl_forge.encounter import GameState
from srl_forge.encounters import DesignSpec, EncounterDesigner
from srl_forge.grading import best_constant_action
from srl_forge.lore import load_species_lore
from srl_forge.policy import render_answer
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.stats import Interval
from srl_forge.teachers.collaboration import produce_trajectories
from srl_forge.teachers.lines import load_voice
from srl_forge.teachers.team import Teachers, TeachersConfig
from tests.helpers import LORE_ROOT, REPO, RULES_ROOT, has_row
from training.evaluation import (
    EvalCase,
    bootstrap,
    comparison_table,
    distinct_2,
    duplicate_line_share,
    evaluate_reference,
    score_policy,
)
from training.outcome_dataset import outcome_row
from training.rlvr import decision_text


@pytest.fixture(scope="module")
def werewolf_cases():
    lore = load_species_lore(LORE_ROOT, "werewolf")
    rulebook = load_rulebook(RULES_ROOT, "werewolf", lore.document_ids)
    engine = RulesEngine(rulebook)

    encounter_set = EncounterDesigner(rulebook, GameState(), seed=2).design(
        DesignSpec(train_size=60, validation_size=10, test_size=40)
    )
    teachers = Teachers(TeachersConfig(), REPO / ".no-cache", REPO / "voices", rulebook)
    batch = produce_trajectories(encounter_set.encounters, engine, lore.dossier, teachers.team)
    accepted = {a.encounter_id: a for a in batch.accepted}
    voice = load_voice(REPO / "voices", rulebook)
    cases = [
        EvalCase(
            row=outcome_row(e, engine, voice),
            encounter=e.encounter,
            expert_answer=decision_text(accepted[e.encounter_id].trajectory),
        )
        for e in encounter_set.by_split("test")
    ]
    constant = best_constant_action([e.label for e in encounter_set.by_split("train")], engine.vocabulary)
    return cases, constant


def test_references_order_as_they_must(werewolf_cases):
    cases, constant = werewolf_cases
    results = {
        name: evaluate_reference(name, cases, constant)
        for name in ("best_constant", "random_acceptable", "rules_engine")
    }
    acc = {name: r.metrics.decision_accuracy.value for name, r in results.items()}
    assert acc["rules_engine"] == 1.0 and acc["best_constant"] <= 0.35 and acc["random_acceptable"] < 0.7
    ceiling = results["rules_engine"].metrics
    assert ceiling.graded_reward.value == 1.0 and ceiling.format_rate.value == 1.0
    assert ceiling.line_grounding.value == 1.0 and ceiling.stock_line_share.value == 0.0
    assert results["random_acceptable"].metrics.acceptable_rate.value == 1.0
    # the constant speaks one stock line everywhere: it is all duplicates and grounded nowhere
    constant_metrics = results["best_constant"].metrics
    assert constant_metrics.duplicate_line_share.value == 1.0 and constant_metrics.stock_line_share.value == 1.0
    assert ceiling.duplicate_line_share.value < 0.2
    assert ceiling.distinct_2.value > 10 * constant_metrics.distinct_2.value
    table = comparison_table(results)
    assert has_row(table, "rules_engine", "reference", "40", "1.00")


def test_bootstrap_interval_covers_the_point_and_narrows_with_agreement(werewolf_cases):
    cases, constant = werewolf_cases
    noisy = score_policy(
        cases,
        [f'<think>t</think>\nACTION: {constant if i % 2 else "howl"}\nSAY: "Rrr, prey."' for i, _ in enumerate(cases)],
        "direct",
    ).metrics.decision_accuracy
    assert noisy.low <= noisy.value <= noisy.high and noisy.high - noisy.low > 0.1
    half_stock = score_policy(
        cases,
        [
            render_answer("t", "howl", "Rrr, prey." if i % 2 else f"Prey {chr(97 + i % 26) * (1 + i // 26)}, run.")
            for i, _ in enumerate(cases)
        ],
        "direct",
    ).metrics.duplicate_line_share
    assert half_stock.value == 0.5 and half_stock.low <= 0.5 <= half_stock.high
    certain = bootstrap(
        [
            {
                "decision_accuracy": 1.0,
                "acceptable_rate": 1.0,
                "graded_reward": 1.0,
                "format": True,
                "line_grounding": 1.0,
                "in_character": 1.0,
                "stock": False,
                "guardrail": False,
                "line": f"line {i} words",
            }
            for i in range(30)
        ]
    )
    assert certain.decision_accuracy == Interval.exact(1.0)


def test_line_diversity_metrics():
    assert distinct_2(["the pack hunts", "the pack hunts"]) == 0.5
    assert distinct_2(["the pack hunts", "silver burns my blood"]) == 1.0
    assert duplicate_line_share(["The pack hunts.", "the pack, hunts", "Silver burns."]) == pytest.approx(2 / 3)
    assert duplicate_line_share(["Silver burns.", None]) == 0.5  # a broken answer has no line of its own


def test_distinct_2_interval_contains_the_measured_value():
    lines = [
        f"the {w} hunts under the {m} moon" for w in ("pack", "wolf", "elder", "pack") for m in ("red", "pale", "red")
    ]
    cases = [
        {
            "decision_accuracy": 1,
            "acceptable_rate": 1,
            "graded_reward": 1,
            "format": 1,
            "line_grounding": 0,
            "in_character": 1,
            "stock": 0,
            "guardrail": 0,
            "line": line,
        }
        for line in lines
    ]
    d2 = bootstrap(cases).distinct_2
    assert d2.low <= d2.value <= d2.high
    assert d2.high - d2.low > 0
