"""SRL reward values against hand-computed difflib ratios."""

import difflib

import pytest

from training.rewards import (
    action_similarity,
    step_format_reward,
    step_similarity_reward,
)

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


@pytest.mark.parametrize(
    "text",
    [
        "4. **DECIDE** ACTION: recoil",  # no thinking
        "<think>hmm 4. **DECIDE** ACTION: recoil",  # unclosed
        "<think>x</think>\nACTION: recoil",  # not a step
        '<think>x</think>\n4. **DECIDE** ACTION: recoil\n5. **SPEAK** SAY: "Back!"',  # two steps
        "<think>x</think>",  # nothing after thinking
        "<think>a</think><think>b</think> 4. **DECIDE** ACTION: recoil",  # thinking twice
    ],
)
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
