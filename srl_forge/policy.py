"""The policy's contract: what the monster reads and writes, shared by the teachers, training,
evaluation and serving. Nothing else renders or parses it.

- **Prompts**: the encounter as the policy reads it (`describe_encounter`), the SRL step prompt and the
  RLVR decision prompt. Short on purpose: every prompt token is paid in every CPU training step (a system
  prompt of ~45 tokens instead of ~75 shortens the RLVR rows by a fifth).
- **A step** (SRL, arXiv 2510.25992): `N. **TITLE** action`, on one line; a DECIDE step's action is
  `ACTION: <id>`, a SPEAK step's `SAY: "<line>"`.
- **An answer**: `<think>thought</think>` then, for SRL, exactly one step; for a decision (RLVR,
  evaluation, serving), one `ACTION: <id>` line and one `SAY: "<line>"` line.
- **"Settled broken"**: a prefix no continuation of which can parse, so generation may stop there and
  the score is final (a property test holds it).
- **A stream** (`ThinkingStream`): the thinking as it comes, then the answer a whole line at a time; any
  split of a text into pieces yields what the whole text does.
"""

from __future__ import annotations

import re

from srl_forge.encounter import Encounter

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STEP_TITLES = ("ASSESS", "RECALL LORE", "APPLY RULE", "DECIDE", "SPEAK")

STEP_LINE = re.compile(r"^\s*(\d+)\.\s+\*\*([A-Z][A-Z ]*[A-Z])\*\*\s+(.+?)\s*$", re.DOTALL)
THINK_THEN_ANSWER = re.compile(r"^\s*<think>(.*?)</think>\s*(.*?)\s*$", re.DOTALL)
ACTION_ID = re.compile(r"^\s*ACTION:\s*([a-z_]+)\s*$")  # a DECIDE step's whole action
ACTION_IN = re.compile(r"ACTION:\s*([a-z_]+)")  # an action id anywhere
SPOKEN_IN = re.compile(r'SAY:\s*"(.*)"', re.DOTALL)  # a SPEAK step's line (quotes inside it kept)
ACTION_LINE = re.compile(r"(?m)ACTION:\s*([a-z_]+)\s*$")
SAY_LINE = re.compile(r'(?m)SAY:\s*"([^"\n]+)"\s*$')
# The grammar's markers inside outside text (lore, rules, player words, a teacher's thoughts): such text dictates
# an answer to the model. Read by `text_screen` after NFKC, case-sensitively as the parser above reads them.
GRAMMAR_IN_TEXT: dict[str, re.Pattern[str]] = {
    "think_tag": re.compile(r"(</?\s*(?:think|system|assistant|answer|reasoning)\s*>)", re.IGNORECASE),
    "dictated_action": re.compile(r"(\bACTION\s*:\s*[a-z_]+)"),
    "dictated_line": re.compile(r"(\bSAY\s*:\s*[\"“])"),
    "dictated_step": re.compile(r"(\*\*(?:" + "|".join(re.escape(t) for t in STEP_TITLES) + r")\*\*)"),
}

# The answer budgets (new tokens), shared by training, evaluation and serving. A step is 40-80 tokens with its
# thought. A decision's thought copies the facts (ASSESS) and names the rules before the action: the five species'
# expert answers are 83-160 tokens (medians 115-130), cut before `ACTION:` at 96
# (bench/results/sweep-evidence-thought-zombie.md: format 0.00 at 96, 1.00 at 192).
STEP_TOKENS = 96
DECISION_TOKENS = 192

# --- prompts --------------------------------------------------------------------------------------

SRL_SYSTEM = (
    "You are a {species} in a dark-fantasy game, reasoning one step at a time. Think inside <think>...</think>, "
    "then write only the next step, 'N. **TITLE** action', on one line."
)

RLVR_SYSTEM = (
    "You are a {species} in a dark-fantasy game. Inside <think>...</think> name the rules that apply, then answer "
    "'ACTION: <id>' and 'SAY: \"<line>\"'. Actions: {actions}."
)


def describe_encounter(encounter: Encounter) -> str:
    """A compact, readable description of an encounter for prompts (kept short for CPU budgets)."""
    g, n, p, loc = encounter.game, encounter.npc, encounter.player, encounter.location
    events = ", ".join(g.live_events) or "none"
    items = ", ".join(p.items) or "nothing"
    place = loc.kind + (" (invited)" if loc.invited else "") + (" (consecrated)" if loc.consecrated else "")
    said = f' and says "{p.utterance}"' if p.utterance else ""
    return (
        f"World: {g.time_of_day}, {g.moon_phase} moon, {g.weather}; live events: {events}.\n"
        f"You: {n.species}, tier {n.tier}, hunger {n.hunger:.2f}, health {n.health:.2f}, allies {n.allies}.\n"
        f"Player: {p.party_size} {p.faction} carrying {items}; they {p.action}{said}.\n"
        f"Place: {place}."
    )


def assess_text(encounter: Encounter) -> str:
    """The ASSESS step's action: what the monster perceives, in one line (no decision in it)."""
    g, n, p = encounter.game, encounter.npc, encounter.player
    return (
        f"{g.time_of_day.capitalize()}, {g.moon_phase} moon, {g.weather}"
        + (f", {', '.join(g.live_events)}" if g.live_events else "")
        + f"; {p.party_size} {p.faction} {p.action} at the {encounter.location.kind}"
        + (f" carrying {', '.join(p.items)}" if p.items else "")
        + f"; I am {n.species}, hunger {n.hunger:.2f}, health {n.health:.2f}, allies {n.allies}."
    )


def srl_prompt(encounter: Encounter, previous_steps: list[str], step_number: int, next_title: str | None) -> list[dict]:
    so_far = "\n".join(previous_steps) if previous_steps else "(none yet)"
    ask = f"Write step {step_number}" + (f", a **{next_title}** step." if next_title else ".")
    return [
        {"role": "system", "content": SRL_SYSTEM.format(species=encounter.species)},
        {"role": "user", "content": f"{describe_encounter(encounter)}\n\nSteps so far:\n{so_far}\n\n{ask}"},
    ]


def rlvr_prompt(encounter: Encounter, actions: tuple[str, ...], persona_intro: str | None = None) -> list[dict]:
    """The decision prompt; a named NPC (Tier 3) gets its persona's introduction first."""
    system = RLVR_SYSTEM.format(species=encounter.species, actions=", ".join(actions))
    return [
        {"role": "system", "content": f"{persona_intro}\n{system}" if persona_intro else system},
        {"role": "user", "content": describe_encounter(encounter)},
    ]


# --- rendering ------------------------------------------------------------------------------------


def render_step(number: int, title: str, action: str) -> str:
    return f"{number}. **{title}** {action}"


def decide_action(action: str) -> str:
    """A DECIDE step's action text."""
    return f"ACTION: {action}"


def speak_action(line: str) -> str:
    """A SPEAK step's action text."""
    return f'SAY: "{line}"'


def render_step_answer(thought: str, step: str) -> str:
    """An SRL completion: the thought, then the one rendered step."""
    return f"{THINK_OPEN}{thought}{THINK_CLOSE}\n{step}"


def render_answer(thought: str, action: str | None, line: str | None) -> str:
    """A decision: `<think>...</think>`, then `ACTION: <id>` and `SAY: "..."`."""
    return f"{THINK_OPEN}{thought}{THINK_CLOSE}\n{decide_action(action)}\n{speak_action(line)}"


def render_said(action: str, line: str, action_already_said: bool) -> str:
    """The rest of an answer after its released lines: the line, and the action when it was not said yet."""
    return speak_action(line) if action_already_said else f"{decide_action(action)}\n{speak_action(line)}"


# --- parsing --------------------------------------------------------------------------------------


def split_thinking(text: str) -> tuple[str, str] | None:
    """(thinking, answer) when the text is `<think>...</think>` followed by an answer, else None."""
    match = THINK_THEN_ANSWER.match(text)
    if not match or THINK_OPEN in match.group(2) or THINK_CLOSE in match.group(2):
        return None
    return match.group(1).strip(), match.group(2)


def parse_step(text: str) -> tuple[int, str, str] | None:
    """(number, title, action) of a single rendered step, or None when it is not one step."""
    stripped = text.strip()
    if not stripped or "\n" in stripped:
        return None
    match = STEP_LINE.match(stripped)
    if not match:
        return None
    return int(match.group(1)), match.group(2), match.group(3)


def generated_action(text: str) -> str | None:
    """The action of the single step after the thinking, or None when the format is broken."""
    parts = split_thinking(text)
    if parts is None:
        return None
    step = parse_step(parts[1])
    return step[2] if step else None


def first_step(text: str) -> str:
    """The thinking and the first line after it: a step ends at its line's end, as a stop sequence would end it
    (a policy that goes on to write the next steps itself has still written this one)."""
    close = text.find(THINK_CLOSE)
    if close < 0:
        return text
    after = text[close + len(THINK_CLOSE) :].lstrip("\n")
    return text[: close + len(THINK_CLOSE)] + "\n" + after.split("\n", 1)[0]


def decision_id(step_action: str | None) -> str | None:
    """The action id of a DECIDE step's whole action `ACTION: <id>`, else None."""
    match = ACTION_ID.match(step_action or "")
    return match.group(1) if match else None


def action_in(text: str) -> str | None:
    """The first action id named anywhere in `text` (`ACTION: <id>`), else None."""
    match = ACTION_IN.search(text)
    return match.group(1) if match else None


def spoken_in(text: str) -> str | None:
    """The line of a SPEAK step's action (`SAY: "..."`), else None."""
    match = SPOKEN_IN.search(text)
    return match.group(1) if match else None


def parse_decision(text: str) -> tuple[str, str] | None:
    """(action, spoken line) from `<think>...</think>` then `ACTION: <id>` and `SAY: "..."`, else None."""
    parts = split_thinking(text)
    if parts is None:
        return None
    actions, lines = ACTION_LINE.findall(parts[1]), SAY_LINE.findall(parts[1])
    if len(actions) != 1 or len(lines) != 1:
        return None
    return actions[0], lines[0]


def spoken_line(text: str) -> str | None:
    """The SAY line of a decision answer, or None when the format is broken."""
    decision = parse_decision(text)
    return decision[1] if decision else None


def think_format_settled_broken(text: str) -> bool:
    """True once no continuation of `text` can be `<think>...</think>` then an answer: it does not open
    with <think>, or a think tag follows the first </think>. Generation may stop there (the score is final)."""
    opened = text.lstrip()
    if not (opened.startswith(THINK_OPEN) or THINK_OPEN.startswith(opened)):
        return True
    close = opened.find(THINK_CLOSE)
    answer = opened[close + len(THINK_CLOSE) :] if close >= 0 else ""
    return THINK_OPEN in answer or THINK_CLOSE in answer


def step_format_settled_broken(text: str) -> bool:
    """True once `text` can no longer be a single SRL step after the thinking: a second line has begun."""
    if think_format_settled_broken(text):
        return True
    close = text.find(THINK_CLOSE)
    return close >= 0 and "\n" in text[close + len(THINK_CLOSE) :].strip()


def decision_format_settled_broken(text: str) -> bool:
    """True once `text` can no longer parse as one decision: a second finished ACTION or SAY line."""
    if think_format_settled_broken(text):
        return True
    close = text.find(THINK_CLOSE)
    if close < 0:
        return False
    answer = text[close + len(THINK_CLOSE) :]
    finished = answer[: answer.rfind("\n") + 1]  # lines already ended stay matches whatever follows
    return len(ACTION_LINE.findall(finished)) > 1 or len(SAY_LINE.findall(finished)) > 1


# --- streams --------------------------------------------------------------------------------------


class ThinkingStream:
    """Splits an answer arriving piece by piece into `("reasoning", text)` events as the thought grows and
    `("content", line)` events a whole answer line at a time; `rest()` is the unfinished last line."""

    def __init__(self):
        self.text, self.reasoning, self.pending, self.released = "", "", "", ""
        self.in_thinking = True

    def _thinking_so_far(self) -> str:
        """The thought without its tags, less a trailing piece that may be the start of `</think>`
        (tokens arrive one by one: "<", "/", "think", ">")."""
        body = self.text.lstrip()
        if THINK_OPEN.startswith(body):
            return ""
        if body.startswith(THINK_OPEN):
            body = body[len(THINK_OPEN) :]
        end = body.find(THINK_CLOSE)
        if end >= 0:
            return body[:end]
        for k in range(len(THINK_CLOSE) - 1, 0, -1):
            if body.endswith(THINK_CLOSE[:k]):
                return body[:-k]
        return body

    def feed(self, piece: str) -> list[tuple[str, str]]:
        self.text += piece
        events = []
        if self.in_thinking:
            thought = self._thinking_so_far()
            if thought.startswith(self.reasoning) and len(thought) > len(self.reasoning):
                events.append(("reasoning", thought[len(self.reasoning) :]))
                self.reasoning = thought
            if THINK_CLOSE not in self.text:
                return events
            self.in_thinking = False
            self.pending = self.text.split(THINK_CLOSE, 1)[1]
        else:
            self.pending += piece
        while "\n" in self.pending:
            line, _, self.pending = self.pending.partition("\n")
            if line.strip():
                self.released += line + "\n"
                events.append(("content", line + "\n"))
        return events

    def rest(self) -> str:
        return self.pending
