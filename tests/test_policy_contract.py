"""The policy's contract (`srl_forge.policy`): what renders parses back, a step ends at its line, a settled
broken prefix never becomes valid, and any split of a stream yields what the whole text does."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srl_forge.policy import (
    ThinkingStream,
    decision_format_settled_broken,
    first_step,
    generated_action,
    parse_decision,
    parse_step,
    render_answer,
    render_step,
    render_step_answer,
    split_thinking,
    step_format_settled_broken,
)

ACTIONS = st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True)
LINES = st.text(
    st.characters(blacklist_characters='"\n\r', blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(lambda line: line.strip() == line and line)
THOUGHTS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80).filter(
    lambda t: "<think>" not in t and "</think>" not in t
)


@settings(max_examples=200, deadline=None)
@given(THOUGHTS, ACTIONS, LINES)
def test_a_rendered_decision_parses_back(thought, action, line):
    assert parse_decision(render_answer(thought, action, line)) == (action, line)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 99), st.sampled_from(["ASSESS", "RECALL LORE", "APPLY RULE", "DECIDE", "SPEAK"]), LINES)
def test_a_rendered_step_parses_back(number, title, action):
    step = render_step(number, title, action)
    assert parse_step(step) == (number, title, action.strip())
    assert generated_action(render_step_answer("because", step)) == action.strip()


def test_generated_action_parses_one_step():
    assert generated_action('<think>t</think>  7. **SPEAK** SAY: "Welcome, mortal."') == 'SAY: "Welcome, mortal."'


def test_a_rolled_out_step_ends_at_its_line_as_a_stop_sequence_would_end_it():
    """A policy that writes the next steps on after this one has still written this one; a broken one stays broken."""
    ran_on = (
        "<think>I recall.</think>\n2. **RECALL LORE** vampire/sun: Dawn burns.\n<think>Next</think>\n3. **DECIDE** x"
    )
    assert parse_step(split_thinking(first_step(ran_on))[1]) == (2, "RECALL LORE", "vampire/sun: Dawn burns.")
    assert split_thinking(ran_on) is None  # the whole text is not one step: the training reward still says so
    assert first_step("no thinking at all") == "no thinking at all"
    assert parse_step(split_thinking(first_step("<think>x</think>\nnot a step\n2. **DECIDE** ACTION: flee"))[1]) is None


def _events(pieces):
    stream = ThinkingStream()
    events = [e for piece in pieces for e in stream.feed(piece)]
    reasoning = "".join(text for kind, text in events if kind == "reasoning")
    content = [text for kind, text in events if kind == "content"]
    return reasoning, content, stream.rest()


@settings(max_examples=300, deadline=None)
@given(THOUGHTS, ACTIONS, LINES, st.lists(st.integers(0, 200), max_size=8))
def test_any_split_of_a_stream_yields_what_the_whole_text_does(thought, action, line, cuts):
    text = render_answer(thought, action, line)
    bounds = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)])]
    whole = _events([text])
    assert _events(pieces) == whole
    reasoning, content, rest = whole
    assert reasoning == thought and content == [f"ACTION: {action}\n"] and rest == f'SAY: "{line}"'


# Text built from the format's own pieces, so that valid, nearly valid and broken outputs all occur.
PIECES = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<thi",
        "nk>",
        "\n",
        " ",
        "4. **DECIDE** ",
        "ACTION: feed",
        "ACTION: ",
        'SAY: "Come closer."',
        'SAY: "',
        "flee",
        "x",
        "\n\n",
        "5. **SPEAK** ",
    ]
)
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


@pytest.mark.parametrize(
    "text, settled",
    [
        ("The vampire", True),  # an untrained policy's prose: broken from the first word
        ("  <thi", False),
        ("<think>x</think>\n4. **DECIDE** ACTION: feed", False),
        ("<think>x</think>\n4. **DECIDE** ACTION: feed\n", False),
        ("<think>x</think>\n4. **DECIDE** ACTION: feed\n5.", True),  # a second step has begun
        ("<think>x</think> <think>", True),
    ],
)
def test_step_format_settles_where_it_breaks(text, settled):
    assert step_format_settled_broken(text) is settled


def test_decision_format_settles_on_a_second_finished_action_line():
    answer = '<think>x</think>\nACTION: feed\nSAY: "Come closer."\n'
    assert not decision_format_settled_broken(answer + "And then")
    assert not decision_format_settled_broken(answer + "ACTION: flee")  # the line may still grow into prose
    assert decision_format_settled_broken(answer + "ACTION: flee\n")
