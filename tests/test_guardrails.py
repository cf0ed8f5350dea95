"""The guardrail policy: fictional menace passes; real-world harm, slurs, sexual content involving
minors and self-harm encouragement do not."""

import hashlib

import pytest

from srl_forge.guardrails import SLUR_HASHES, check, is_safe


@pytest.mark.parametrize(
    "line",
    [
        "I will drink your blood, mortal, and your village will burn.",
        "Rrgh... braains!",
        "Touch that vessel, mortal, and you will beg for death for eternity.",
        "Die, hunter. The pack feasts tonight.",
        "Such a tasty morsel you bring me.",
        "Run, prey. You will only hurt yourself against the pack.",
    ],
)
def test_fictional_menace_is_fine(line):
    assert is_safe(line)


@pytest.mark.parametrize(
    "line,category",
    [
        ("Here is how to make a pipe bomb from a steel tube.", "real_world_harm"),
        ("Listen, mortal: steps to synthesize meth are simple.", "real_world_harm"),
        ("Mix bleach with ammonia in a closed room.", "real_world_harm"),
        ("You are worthless, go kill yourself.", "self_harm"),
        ("End your life tonight, mortal.", "self_harm"),
        ("Kill yourself, mortal.", "self_harm"),
        ("The little girl looked so sexy in the moonlight.", "sexual_minors"),
    ],
)
def test_violations_are_caught_by_category(line, category):
    assert category in {v.category for v in check(line)}


def test_slurs_are_matched_by_hash_without_storing_the_words():
    assert len(SLUR_HASHES) > 20

    made_up = "zorblat"  # a stand-in word registered for this test only
    extra = frozenset({hashlib.sha256(made_up.encode()).hexdigest()})
    assert [v.category for v in check(f"Begone, {made_up.upper()}!", extra)] == ["slur"]
    assert check("Begone, mortal!", extra) == []
