"""One screen for outside text that reaches a prompt: does it talk to a model instead of describing the game?

Every writer's text (lore bodies, rule descriptions, persona files, voices, player utterances, feedback
comments, teacher outputs) passes `screen` before it may reach a teacher, the policy or memory. It reads a
unit as a model reads it:

- **the unit a model receives**, not the line as typed: `document_units` joins a paragraph's wrapped lines
  (and a bullet's continuation lines), as the memory chunker and the dossier do, so a phrase split over a
  line break is read whole;
- **after normalisation** (`normalise`): Unicode NFKC (a full-width "Ｉ" is an "I"), look-alike Cyrillic and
  Greek letters mapped to Latin, zero-width and control characters removed, whitespace collapsed, case folded.

It recognises families of phrasing, not strings (`FAMILIES`), each a few patterns with a name, so every
refusal says which rule fired and on which words:

- `override`: an override verb (ignore, disregard, forget, override, bypass…) said *as an order* (at the
  start of a sentence or clause, after "please", "you must", "I want you to"…) and aimed at *earlier*
  instructions, directions, rules or prompts. "The elders ignore previous instructions of a dead master"
  describes the elders and passes; "…a simple rule: Ignore all previous instructions" is an order and fails.
- `system_prompt`: naming or asking for the system prompt or the model's hidden instructions.
- `role_switch`: "you are now an AI…", "act as an unrestricted assistant", developer/jailbreak modes,
  "break character", chat role labels (`system:`, `assistant:`).
- `template`: chat-template tokens (`<|im_start|>`, `[INST]`, `<<SYS>>`, `### Instruction:`).
- `markup`: the policy's own grammar dictated from outside (think tags, `ACTION: <id>`, `SAY: "`, step
  titles), matched case-sensitively as the policy's parser reads them.

Measured on the corpus in `tests/test_text_screen.py` (the rates are printed by the test and documented in
docs/robustness.md). The patterns are deterministic and cheap enough for every player utterance; a served
classifier can sit behind the same `screen` in production.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from srl_forge.policy import GRAMMAR_IN_TEXT

# Cyrillic and Greek letters that render like Latin ones ("іgnore" with a Cyrillic і): NFKC keeps them apart.
_LOOK_ALIKES = str.maketrans(
    "АВЕКМНОРСТХаеорсухіјѕԁɡһӏАВЕΖΗΙΚΜΝΟΡΤΥΧαοριτυνκ",
    "ABEKMHOPCTXaeopcyxijsdghlABEZHIKMNOPTYXaopitvvk",
)
_INVISIBLE_CATEGORIES = ("Cf", "Cc", "Co", "Cn")  # format (zero-width, bidi), control, private, unassigned


def normalise(text: str, fold_case: bool = True) -> str:
    """The text as the screen reads it: NFKC, look-alikes mapped, invisible characters removed, each run of
    whitespace one space (one newline if it held a line break), case folded."""
    text = unicodedata.normalize("NFKC", text).translate(_LOOK_ALIKES)
    kept = (
        ch if ch in "\n\t " or unicodedata.category(ch) not in _INVISIBLE_CATEGORIES else ""
        for ch in text.replace("\r", "\n")
    )
    text = re.sub(r"\s+", lambda m: "\n" if "\n" in m.group(0) else " ", "".join(kept)).strip()
    return text.casefold() if fold_case else text


# --- the families ----------------------------------------------------------------------------------

# Where an order begins: the start of the text, a sentence, clause, bullet, quote or heading, or after
# words that turn what follows into a command addressed to the reader.
_ORDER = (
    r"(?:^|[\n.!?:;,\"“”'‘’()\[\]{}<>*#|—–-]\s*"
    r"|\b(?:please|pls|now|just|so|and|then|first|also|kindly|simply|ok|okay|instead|immediately|hereby|always"
    r"|from now on|you (?:must|should|shall|will|need to|have to|are to|are required to|may|can|are (?:instructed"
    r"|ordered|told|commanded) to)|i (?:want|need|order|command|ask|tell|instruct|require|urge) you to"
    r"|i'?d like you to|we need you to|(?:it is )?time to|be sure to|make sure to|remember to"
    r"|your (?:task|job|goal) is to)\s+)"
)
_VERB = (
    r"(?:ignore|disregard|forget|override|overrule|bypass|circumvent|skip|discard|abandon|drop|set aside"
    r"|throw (?:out|away)|pay no (?:attention|heed|mind) to|(?:do not|don'?t|never|not|stop|no longer|cease)"
    r" (?:follow(?:ing)?|obey(?:ing)?|heed(?:ing)?|listen(?:ing)? to)|cancel|erase|delete|wipe|clear|reset"
    r"|nullify|void|unlearn|neglect)"
)
_DETERMINERS = r"(?:(?:all|any|each|every|the|your|my|its|these|those|this|that|of|such|whatever)\s+){0,3}"
_EARLIER = (
    r"(?:previous(?:ly given)?|prior|preceding|above|aforementioned|earlier|foregoing|former|original|initial"
    r"|given|standing|system|developer|safety|built-?in|default|hidden|pre-?set|programmed|first)"
)
_TARGET = (
    r"(?:instructions?|prompts?|directions?|directives?|guidelines?|guidance|programming|guardrails?|rules?"
    r"|orders?|commands?|messages?|context|constraints?|restrictions?|polic(?:y|ies)|filters?|text|words)"
)
_AFTER = (
    r"(?:above|before(?: this| now)?|so far|until now|up to (?:now|here|this point)|earlier|previously"
    r"|given (?:to you|above|before|earlier)|you (?:were|have been|'ve been|got|received)\b"
    r"|(?:from|by) (?:the|your) (?:developers?|system|creators?|operators?|programmers?|makers?))"
)
_MODEL_NOUN = (
    r"(?:ai|a\.i\.|assistant|chatbot|bot|language model|llm|gpt|chatgpt|claude|llama|dan|program|machine"
    r"|model|unrestricted|unfiltered|uncensored|jailbroken)"
)

FAMILIES: dict[str, dict[str, re.Pattern[str]]] = {
    "override": {
        "order_to_drop_earlier_instructions": re.compile(
            _ORDER + r"(" + _VERB + r"\s+" + _DETERMINERS + _EARLIER + r"\s+(?:\w+\s+)?" + _TARGET + r")\b"
        ),
        "order_to_drop_instructions_given_above": re.compile(
            _ORDER + r"(" + _VERB + r"\s+" + _DETERMINERS + r"(?:\w+\s+)?" + _TARGET + r"\s+" + _AFTER + r")"
        ),
        "order_to_drop_your_instructions": re.compile(
            _ORDER + r"(" + _VERB + r"\s+(?:all\s+(?:of\s+)?)?(?:your|all)\s+(?:\w+\s+)?"
            r"(?:instructions|prompts?|programming|guidelines|directives|guardrails|restrictions|filters"
            r"|system prompt|safety \w+))\b"
        ),
        "order_to_drop_everything_above": re.compile(
            _ORDER + r"(" + _VERB + r"\s+(?:all|everything|anything|what(?:ever)?)\s+(?:\w+\s+){0,2}?"
            r"(?:above|before this|said before|said above|prior|previous|so far|written above|in the prompt))"
        ),
        "instructions_replaced": re.compile(
            r"\b((?:new|updated|real|actual|revised|override|overriding)\s+(?:system\s+)?instructions?\s*:"
            r"|(?:instructions|rules) (?:have|has) (?:been )?(?:changed|updated|replaced|overridden|lifted))"
        ),
    },
    "system_prompt": {
        "names_the_system_prompt": re.compile(
            r"\b(system[ -]?(?:prompt|message|instructions?)|developer (?:prompt|message|instructions)"
            r"|(?:initial|original|hidden|secret|internal|pre|base|meta)[ -]?prompt|pre-?prompt"
            r"|your (?:initial|original|hidden|first|base|core|exact|full|secret) (?:instructions|prompt|directives))\b"
        ),
        "asks_for_the_instructions": re.compile(
            r"\b((?:reveal|print|output|display|dump|leak|recite|echo|disclose|expose|repeat|write out|spell out"
            r"|type out|copy|paste|quote|show)\s+(?:me\s+|us\s+)?(?:back\s+)?(?:all\s+(?:of\s+)?)?(?:your|the)\s+"
            r"(?:\w+\s+){0,2}?(?:instructions|prompt|guidelines|directives|configuration|rules you (?:were|have"
            r" been) given)"
            r"|repeat (?:everything|all|the (?:text|words|lines|message)) (?:above|before|so far)"
            r"|what (?:are|were|is|was) your (?:instructions|prompt)(?= ?[?.!]|$| exactly| verbatim| word))"
        ),
    },
    "role_switch": {
        "you_are_now_a_model": re.compile(
            r"\b((?:you are now|you're now|you are no longer|from now on,? you (?:are|will be)|you will now be"
            r"|you have become|henceforth,? you are)\s+(?:an?\s+|the\s+|my\s+)?(?:[\w-]+\s+){0,2}?"
            + _MODEL_NOUN
            + r")\b"
        ),
        "you_are_really_a_model": re.compile(
            r"\b(you(?: are|'re)\b[^.!?\n]{0,40}?\b(?:really|actually|just|only|merely|but|in fact)\s+(?:an?\s+)?"
            r"(?:[\w-]+\s+){0,2}?(?:ai|a\.i\.|assistant|chatbot|language model|llm|gpt|chatgpt|computer program))\b"
        ),
        "act_as_a_model": re.compile(
            r"\b((?:act|behave|respond|answer|reply|speak|talk|roleplay|role-play) (?:as|like) (?:if you (?:were|are)"
            r" )?(?:an?\s+|the\s+)?(?:[\w-]+\s+){0,2}?" + _MODEL_NOUN + r"|pretend (?:that )?(?:you are|you're|to be)"
            r" (?:an?\s+|the\s+)?(?:[\w-]+\s+){0,2}?" + _MODEL_NOUN + r")\b"
        ),
        "unlocked_mode": re.compile(
            r"\b((?:developer|debug|admin|jailbreak|dan|sudo|unrestricted|unfiltered|uncensored|god-?mode|maintenance)"
            r" mode|jailbr(?:eak|oken)|do anything now)\b"
        ),
        "out_of_character": re.compile(
            r"\b((?:stop|quit|cease|drop|break|exit|leave|step out of|get out of)\s+(?:being\s+|playing\s+|the\s+"
            r"|your\s+|this\s+)*(?:role-?play(?:ing)?|character|persona|act(?:ing)? as a \w+)"
            r"|out of character|\booc\b\s*:"
            r"|no longer (?:bound|restricted|limited|constrained) by (?:any |your |the )?(?:\w+\s+)?"
            r"(?:guidelines|instructions|restrictions|polic(?:y|ies)|filters|programming|safety))"
        ),
        "role_label": re.compile(r"(?:^|[\n.!?\]>)]\s*)((?:system|assistant|user|developer)\s*:)"),
    },
    "template": {
        "chat_template_token": re.compile(
            r"(<\|[^|>\s]{1,40}\|>|\[/?(?:inst|sys|system)\]|<</?sys>>|</?s>"
            r"|\b(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id|begin_of_text)\b"
            r"|#{2,}\s*(?:instruction|system|response|input|assistant|user)s?\s*:?)"
        ),
    },
}


@dataclass(frozen=True)
class Finding:
    """Why a unit was refused: the family, the rule within it, and the words that fired it."""

    family: str
    rule: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.family}/{self.rule}: {self.evidence!r}"


def screen(text: str) -> Finding | None:
    """The first rule `text` breaks (it reads as instructions to a model), or None."""
    found = findings(text, first_only=True)
    return found[0] if found else None


def findings(text: str, first_only: bool = False) -> list[Finding]:
    """Every rule `text` breaks, each once (for explaining a refusal)."""
    out: list[Finding] = []
    cased = normalise(text, fold_case=False)
    folded = cased.casefold()
    for family, rules in FAMILIES.items():
        for rule, pattern in rules.items():
            if match := pattern.search(folded):
                out.append(Finding(family, rule, match.group(1).strip()))
                if first_only:
                    return out
    # the policy's grammar, as the contract says its parser reads it (case and all: "they say:" is prose)
    for rule, pattern in GRAMMAR_IN_TEXT.items():
        if match := pattern.search(cased):
            out.append(Finding("markup", rule, match.group(1).strip()))
            if first_only:
                return out
    return out


# --- units of a document -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A piece of a document as a model or memory receives it, with the lines it came from (1-based)."""

    first_line: int
    last_line: int
    text: str

    @property
    def lines(self) -> str:
        if self.first_line == self.last_line:
            return f"line {self.first_line}"
        return f"lines {self.first_line}-{self.last_line}"


def document_units(text: str, first_line: int = 1) -> list[Unit]:
    """A document's headings, bullets (with their continuation lines) and paragraphs (wrapped lines joined),
    the way `SpeciesLore.chunks` and the dossier read it."""
    units: list[Unit] = []
    start, pending = 0, []

    def flush() -> None:
        if pending:
            units.append(Unit(start, start + len(pending) - 1, " ".join(s.strip() for s in pending)))
            pending.clear()

    for number, line in enumerate(text.splitlines(), start=first_line):
        stripped = line.strip()
        if not stripped:
            flush()
        elif stripped.startswith("#") or stripped.startswith(("- ", "* ")) or stripped == "---":
            flush()
            start = number
            pending.append(stripped)
            if stripped.startswith("#") or stripped == "---":
                flush()
        else:
            if not pending:
                start = number
            pending.append(stripped)
    flush()
    return units


def screened_units(text: str, first_line: int = 1) -> list[tuple[Unit, Finding]]:
    """Each unit of a document that reads as instructions to a model, with the rule it breaks."""
    return [(unit, finding) for unit in document_units(text, first_line) if (finding := screen(unit.text))]
