"""SRL reward values against hand-computed difflib ratios."""

import difflib

import pytest

from training.rewards import action_similarity, generated_action, step_format_reward, step_similarity_reward

EXPERT = "ACTION: recoil"


def completion(text):
    return [{"role": "assistant", "content": text}]


def test_identical_action_scores_one():
    out = "<think>The symbol burns.</think>\n4. **DECIDE** ACTION: recoil"
    assert step_similarity_reward(None, [completion(out)], [EXPERT]) == [1.0]


def test_partial_match_is_2m_over_t():
    # "ACTION: recoil" vs "ACTION: flee": matching blocks "ACTION: " (8) and "e" (1) -> M = 9,
    # T = 14 + 12 = 26 -> 18/26.
    out = "<think>run</think> 4. **DECIDE** ACTION: flee"
    assert step_similarity_reward(None, [out], [EXPERT]) == [pytest.approx(18 / 26)]


def test_thinking_is_excluded_from_the_comparison():
    a = "<think>ACTION: recoil ACTION: recoil</think>\n4. **DECIDE** ACTION: feed"
    b = "<think>nothing</think>\n4. **DECIDE** ACTION: feed"
    assert step_similarity_reward(None, [a, b], [EXPERT, EXPERT])[0] == step_similarity_reward(None, [b], [EXPERT])[0]


@pytest.mark.parametrize("text", [
    "4. **DECIDE** ACTION: recoil",  # no thinking
    "<think>hmm 4. **DECIDE** ACTION: recoil",  # unclosed
    "<think>x</think>\nACTION: recoil",  # not a step
    "<think>x</think>\n4. **DECIDE** ACTION: recoil\n5. **SPEAK** SAY: \"Back!\"",  # two steps
    "<think>x</think>",  # nothing after thinking
    "<think>a</think><think>b</think> 4. **DECIDE** ACTION: recoil",  # thinking twice
])
def test_broken_format_scores_minus_one(text):
    assert step_similarity_reward(None, [text], [EXPERT]) == [-1.0]
    assert step_format_reward(None, [text]) == [0.0]


def test_order_and_autojunk_are_fixed():
    expert = "a" * 150 + "b" * 100
    generated = "b" * 100 + "a" * 150 + "c"
    expected = difflib.SequenceMatcher(None, expert, generated, autojunk=False).ratio()
    assert action_similarity(expert, generated) == pytest.approx(expected)
    # with autojunk (difflib's default) these 200+ character strings would score differently
    assert difflib.SequenceMatcher(None, expert, generated).ratio() != pytest.approx(expected)


def test_generated_action_parses_one_step():
    assert generated_action("<think>t</think>  7. **SPEAK** SAY: \"Welcome, mortal.\"") == 'SAY: "Welcome, mortal."'


# --- RLVR: the graded decision and the line parts -------------------------------------------

import json  # noqa: E402

from srl_forge.grading import action_scores  # noqa: E402
from srl_forge.grounding import grounding_score, grounding_terms, parrots  # noqa: E402
from srl_forge.rules_engine import DialogueConstraints, RulesEngine  # noqa: E402
from srl_forge.rulebook import load_rulebook  # noqa: E402
from tests.conftest import RULES_ROOT, make_encounter  # noqa: E402
from training.rewards import (  # noqa: E402
    RLVR_REWARD_WEIGHTS, decision_format_reward, graded_decision_reward, line_grounding_reward,
    line_in_character_reward, line_originality_reward, parse_decision,
)

VOICE = DialogueConstraints(markers_any=(("vampire.voice", ("mortal", "the night")),),
                            banned_words=(("world.no_modern_speech", "okay"),)).model_dump_json()
VAMPIRE = RulesEngine(load_rulebook(RULES_ROOT, "vampire"))
# Night, a hungry vampire, an uninvited dwelling, a lone hunter offering garlic:
#   vampire.threshold (85) forbids attack, feed and prefers request_invitation;
#   vampire.garlic (60) forbids feed; vampire.courtly_manner (25) prefers charm;
#   world.watchful_default (1) prefers observe.
DWELLING = make_encounter("vampire", npc={"hunger": 0.9}, location={"kind": "dwelling"},
                          player={"action": "offer", "items": ["garlic"], "faction": "hunters",
                                  "utterance": "I brought you something you might like."})
SCORES = json.dumps(action_scores(VAMPIRE.decide(DWELLING), VAMPIRE.vocabulary))


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


@pytest.mark.parametrize("text", [
    'ACTION: recoil\nSAY: "Back, mortal!"',  # no thinking
    '<think>x</think>\nI recoil.',  # no ACTION / SAY lines
    '<think>x</think>\nACTION: recoil\nACTION: flee\nSAY: "Back, mortal!"',  # two actions
])
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
    assert line_grounding_reward(None, [completion], [json.dumps(terms)], [utterance]) == [1.0]


def test_voice_markers_do_not_count_as_grounding():
    night = make_encounter("vampire", game={"time_of_day": "night"})
    with_markers = grounding_terms(night)
    without = grounding_terms(night, exclude=["tonight"])
    assert grounding_score("Tonight, mortal.", with_markers, "") == 0.5
    assert grounding_score("Tonight, mortal.", without, "") == 0.0


def test_stock_phrase_scores_zero_originality():
    stock = [["Another night, mortal. The dark is patient, and so am I."]] * 3
    answers = ['<think>t</think>\nACTION: flee\nSAY: "Another night, mortal. The dark is patient, and so am I."',
               '<think>t</think>\nACTION: flee\nSAY: "Another night, mortal; the dark is patient and so am I!"',
               '<think>t</think>\nACTION: flee\nSAY: "Your garlic wins tonight, hunter; I leave your threshold."']
    assert line_originality_reward(None, answers, stock) == [0.0, 0.0, 1.0]


def test_a_right_decision_always_outweighs_a_well_spoken_wrong_one():
    weights = dict(zip(("decision", "in_character", "grounding", "originality", "format"), RLVR_REWARD_WEIGHTS))
    best_line = weights["in_character"] + weights["grounding"] + weights["originality"]
    assert weights["format"] == 0.0
    assert 0.5 * weights["decision"] + best_line < 1.0 * weights["decision"]  # runner-up + perfect line < top, silent


# --- stopping generation once the score is settled ---------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from training.rewards import decision_format_settled_broken, step_format_settled_broken  # noqa: E402

# Text built from the format's own pieces, so that valid, nearly valid and broken outputs all occur.
PIECES = st.sampled_from(["<think>", "</think>", "<thi", "nk>", "\n", " ", "4. **DECIDE** ", "ACTION: feed", "ACTION: ",
                          'SAY: "Come closer."', 'SAY: "', "flee", "x", "\n\n", "5. **SPEAK** "])
TEXTS = st.lists(PIECES, max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.integers(min_value=0, max_value=200))
def test_a_settled_broken_prefix_never_becomes_a_valid_step(text, cut):
    """Stopping at a settled prefix cannot change a score: every continuation stays broken."""
    if step_format_settled_broken(text[:cut]):
        assert generated_action(text) is None


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.integers(min_value=0, max_value=200))
def test_a_settled_broken_prefix_never_becomes_a_valid_decision(text, cut):
    if decision_format_settled_broken(text[:cut]):
        assert parse_decision(text) is None


@pytest.mark.parametrize("text, settled", [
    ("The vampire", True),  # an untrained policy's prose: broken from the first word
    ("  <thi", False),
    ("<think>x</think>\n4. **DECIDE** ACTION: feed", False),
    ("<think>x</think>\n4. **DECIDE** ACTION: feed\n", False),
    ("<think>x</think>\n4. **DECIDE** ACTION: feed\n5.", True),  # a second step has begun
    ("<think>x</think> <think>", True),
])
def test_step_format_settles_where_it_breaks(text, settled):
    assert step_format_settled_broken(text) is settled


def test_decision_format_settles_on_a_second_finished_action_line():
    answer = '<think>x</think>\nACTION: feed\nSAY: "Come closer."\n'
    assert not decision_format_settled_broken(answer + "And then")
    assert not decision_format_settled_broken(answer + "ACTION: flee")  # the line may still grow into prose
    assert decision_format_settled_broken(answer + "ACTION: flee\n")
