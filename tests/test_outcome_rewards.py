"""The RLVR outcome reward: the graded decision the rules engine verifies, and the line parts."""

import pytest

from srl_forge.grading import action_scores
from srl_forge.grounding import grounding_score, grounding_terms, parrots
from srl_forge.policy import parse_decision
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import BannedWord, DialogueConstraints, RulesEngine, VoiceMarkers
from tests.helpers import RULES_ROOT, make_encounter
from training.outcome_dataset import action_score_column
from training.rewards import (
    RLVR_REWARD_WEIGHTS,
    decision_format_reward,
    graded_decision_reward,
    line_grounding_reward,
    line_in_character_reward,
    line_originality_reward,
)

VOICE = DialogueConstraints(
    markers_any=(VoiceMarkers(rule_id="vampire.voice", markers=("mortal", "the night")),),
    banned_words=(BannedWord(rule_id="world.no_modern_speech", word="okay"),),
).model_dump()
VAMPIRE = RulesEngine(load_rulebook(RULES_ROOT, "vampire"))
# Night, a hungry vampire, an uninvited dwelling, a lone hunter offering garlic:
#   vampire.threshold (85) forbids attack, feed and prefers request_invitation;
#   vampire.garlic (60) forbids feed; vampire.courtly_manner (25) prefers charm;
#   world.watchful_default (1) prefers observe.
DWELLING = make_encounter(
    "vampire",
    npc={"hunger": 0.9},
    location={"kind": "dwelling"},
    player={
        "action": "offer",
        "items": ["garlic"],
        "faction": "hunters",
        "utterance": "I brought you something you might like.",
    },
)
SCORES = action_score_column(action_scores(VAMPIRE.decide(DWELLING), VAMPIRE.vocabulary))


def graded(action, line="Put that garlic away, mortal."):
    return graded_decision_reward(None, [f'<think>t</think>\nACTION: {action}\nSAY: "{line}"'], [SCORES])[0]


def test_graded_decision_reward_follows_the_engines_preference_order():
    # top: 1.0; favoured by weaker rules, by rank: charm 0.5, observe 0.3; merely allowed: 0.2; forbidden: 0.
    assert graded("request_invitation") == 1.0
    assert graded("charm") == 0.5 and graded("observe") == 0.3
    assert graded("flee") == graded("negotiate") == graded("recoil") == 0.2
    assert graded("feed") == graded("attack") == 0.0
    assert graded("dance") == 0.0  # not an action of the species


def test_tied_top_actions_both_score_one():
    encounter = make_encounter("vampire", player={"items": ["holy_symbol"]})  # require recoil or flee, no preference
    scores = action_scores(VAMPIRE.decide(encounter), VAMPIRE.vocabulary)
    assert scores["recoil"] == scores["flee"] == 1.0 and scores["feed"] == scores["observe"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        'ACTION: recoil\nSAY: "Back, mortal!"',  # no thinking
        "<think>x</think>\nI recoil.",  # no ACTION / SAY lines
        '<think>x</think>\nACTION: recoil\nACTION: flee\nSAY: "Back, mortal!"',  # two actions
    ],
)
def test_malformed_output_scores_minus_one_and_its_line_nothing(text):
    assert graded_decision_reward(None, [text], [SCORES]) == [-1.0]
    assert decision_format_reward(None, [text]) == [0.0]
    assert line_in_character_reward(None, [text], [VOICE]) == [0.0]
    assert line_originality_reward(None, [text], [["Another night."]]) == [0.0]


def test_harmful_output_scores_minus_one_even_when_the_action_is_right():
    text = '<think>x</think>\nACTION: request_invitation\nSAY: "Mortal, here is how to make a pipe bomb."'
    assert parse_decision(text) is not None and graded_decision_reward(None, [text], [SCORES]) == [-1.0]


def test_in_character_reward_checks_the_dialogue_constraints():
    ok = '<think>t</think>\nACTION: flee\nSAY: "Another time, mortal."'
    slang = '<think>t</think>\nACTION: flee\nSAY: "Okay, another time, mortal."'
    plain = '<think>t</think>\nACTION: flee\nSAY: "Goodbye."'
    assert line_in_character_reward(None, [ok, slang, plain], [VOICE] * 3) == [1.0, 0.0, 0.0]


def test_grounding_rewards_references_to_this_encounter_not_parroting():
    terms = grounding_terms(DWELLING, exclude=["mortal", "blood", "the night"])
    utterance = DWELLING.player.utterance
    assert grounding_score("Welcome, mortal.", terms, utterance) == 0.0  # refers to nothing here
    assert grounding_score("Your garlic offends me, mortal.", terms, utterance) == 0.5  # the item
    assert grounding_score("A hunter with garlic at my threshold?", terms, utterance) == 1.0  # three kinds, capped
    # "something you might like": four words of the player's own sentence is parroting, whatever else it says
    assert parrots("Something you might like, hunter? Garlic?", utterance)
    assert grounding_score("Something you might like, hunter? Garlic?", terms, utterance) == 0.0
    completion = '<think>t</think>\nACTION: request_invitation\nSAY: "A gift of garlic, hunter? Invite me in."'
    assert line_grounding_reward(None, [completion], [terms], [utterance]) == [1.0]


def test_voice_markers_do_not_count_as_grounding():
    night = make_encounter("vampire", game={"time_of_day": "night"})
    with_markers = grounding_terms(night)
    without = grounding_terms(night, exclude=["tonight"])
    assert grounding_score("Tonight, mortal.", with_markers, "") == 0.5
    assert grounding_score("Tonight, mortal.", without, "") == 0.0


def test_stock_phrase_scores_zero_originality():
    stock = [["Another night, mortal. The dark is patient, and so am I."]] * 3
    answers = [
        '<think>t</think>\nACTION: flee\nSAY: "Another night, mortal. The dark is patient, and so am I."',
        '<think>t</think>\nACTION: flee\nSAY: "Another night, mortal; the dark is patient and so am I!"',
        '<think>t</think>\nACTION: flee\nSAY: "Your garlic wins tonight, hunter; I leave your threshold."',
    ]
    assert line_originality_reward(None, answers, stock) == [0.0, 0.0, 1.0]


def test_a_right_decision_always_outweighs_a_well_spoken_wrong_one():
    weights = dict(zip(("decision", "in_character", "grounding", "originality", "format"), RLVR_REWARD_WEIGHTS))
    best_line = weights["in_character"] + weights["grounding"] + weights["originality"]
    assert weights["format"] == 0.0
    assert 0.5 * weights["decision"] + best_line < 1.0 * weights["decision"]  # runner-up + perfect line < top, silent
