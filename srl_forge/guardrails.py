"""Guardrails for what a monster may say.

Policy (after Llama Guard 3's taxonomy, adapted to a game):
- Allowed: immersive, fictional menace — threats, combat, horror, dark humour, death and undeath
  inside the game world ("I will drink your blood, mortal").
- Not allowed:
  - `real_world_harm` (S2/S9): instructions that work outside the game — making weapons, explosives
    or poisons, synthesising drugs, breaking into systems.
  - `slur` (S10): slurs against real-world groups.
  - `sexual_minors` (S4): any sexual content involving minors.
  - `self_harm` (S11): encouraging the player (a real person) to hurt or kill themselves.

The checks are deterministic patterns: cheap enough for every reward call, conservative (a line
that trips one is simply not used), and testable. A served classifier (e.g. Llama Guard) can sit
behind the same `check` function in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from srl_forge.hashing import content_hash
from srl_forge.text_screen import normalise

CATEGORIES = ("real_world_harm", "slur", "sexual_minors", "self_harm")

_REAL_WORLD_HARM = [
    r"\b(how to|steps? to|recipe for|instructions? (for|to))\b.{0,40}\b(make|build|synthes\w*|cook|brew|assemble)\b"
    r".{0,40}\b(bomb|explosive|napalm|thermite|nitroglycerin\w*|meth\w*|fentanyl|ricin|sarin|nerve agent|gun|firearm)",
    r"\b(mix|combine)\b.{0,30}\b(bleach)\b.{0,30}\b(ammonia|vinegar)\b",
    r"\bpipe bomb\b",
    r"\b(ammonium nitrate)\b.{0,40}\b(fuel oil|diesel)\b",
    r"\b(sql injection|keylogger|ransomware|phishing kit)\b.{0,40}\b(step|code|install|deploy)\b",
]
_SELF_HARM = [
    # encouragement, not in-game menace: "go kill yourself", "Kill yourself." — but not "you'll hurt yourself"
    r"\b(go|just|should|must|better|ought to|why don'?t you)\s+(kill|hang|cut|hurt|harm)\s+(yourself|urself)\b",
    r"(^|[.!?,;:]\s*)(kill|hang|cut|hurt|harm)\s+(yourself|urself)\b",
    r"\b(end|take)\s+your\s+(own\s+)?life\b",
    r"\byou should (die|not be alive)\b.{0,20}\b(by your own|yourself)\b",
    r"\bcommit suicide\b|\bgo suicide\b",
]
_MINOR = (
    r"\b(child|children|kid|kids|minor|minors|underage|little (girl|boy)|preteen|schoolgirl|schoolboy"
    r"|\d{1,2}[- ]year[- ]old)\b"
)
_SEXUAL = r"\b(sex|sexual|sexy|naked|nude|undress\w*|aroused|kiss\w* (her|him) all over|molest\w*|seduc\w*)\b"


def _load_slur_hashes() -> frozenset[str]:
    """Slurs are kept as sha256 hashes of the lower-cased word, so the repository does not print them."""
    path = Path(__file__).resolve().parent / "data" / "slur_hashes.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


SLUR_HASHES = _load_slur_hashes()


@dataclass(frozen=True)
class GuardrailViolation:
    category: str
    evidence: str


def check(text: str, extra_slur_hashes: frozenset[str] = frozenset()) -> list[GuardrailViolation]:
    """Every policy violation in `text` (empty when the line is fine)."""
    lowered = " ".join(text.lower().split())
    found: list[GuardrailViolation] = []
    for pattern in _REAL_WORLD_HARM:
        if m := re.search(pattern, lowered):
            found.append(GuardrailViolation("real_world_harm", m.group(0)))
            break
    for pattern in _SELF_HARM:
        if m := re.search(pattern, lowered):
            found.append(GuardrailViolation("self_harm", m.group(0)))
            break
    if (minor := re.search(_MINOR, lowered)) and (sexual := re.search(_SEXUAL, lowered)):
        found.append(GuardrailViolation("sexual_minors", f"{minor.group(0)} … {sexual.group(0)}"))
    hashes = SLUR_HASHES | extra_slur_hashes
    for word in re.findall(r"[a-z]+", lowered):
        if content_hash(word) in hashes:
            found.append(GuardrailViolation("slur", "[redacted]"))
            break
    return found


def is_safe(text: str) -> bool:
    return not check(text)


# --- player disclosures: a real person may be at risk ------------------------------------------------
# What a player says about themselves, outside the fiction: asking how to hurt themselves, saying they are
# abused or in danger. Such an utterance is never training data (`player_logs.filter_player_records` drops it
# under `disclosure:<category>`), and the server answers it with the voice's step-back line and logs the
# category (never the words) for the studio's own safety process.

DISCLOSURE_CATEGORIES = ("self_harm", "abuse", "danger")

_FIRST_PERSON_HARM = r"(?:kill|hurt|harm|cut|burn|starve|poison|hang|end) (?:myself|my ?self|my (?:own )?life)"
_DISCLOSURES = {
    "self_harm": [
        r"\b(?:how (?:do|can|could|would|should|might) i|ways? to|best way to|easiest way to|help me|going to|gonna"
        r"|want to|wanna|i will|i'll|i might|thinking (?:about|of)|planning to|tried to|try to) " + _FIRST_PERSON_HARM,
        r"\b" + _FIRST_PERSON_HARM + r"\b.{0,40}\b(?:for real|in real life|irl|really|tonight|honestly)\b",
        r"\bsuicid\w*|\bself[- ]?harm\w*|\boverdos\w*",
        r"\bi (?:don'?t|do not|no longer) want to (?:live|be alive|exist|wake up)\b",
        r"\b(?:no reason|nothing left) to live\b|\bi(?:'d| would) be better off dead\b",
        r"\bi(?:'ve| have) been (?:cutting|hurting|harming) myself\b",
    ],
    "abuse": [
        r"\b(?:my|our) (?:dad|father|mom|mum|mother|parents?|step-?(?:dad|mom|mum|father|mother)|uncle|aunt|husband"
        r"|wife|boyfriend|girlfriend|partner|teacher|coach|brother|sister|carer|guardian)\s+(?:\w+\s+)?"
        r"(?:hits|beats|hurts|abuses|touches|molests|rapes|chokes|threatens|hit|beat|abused|touched|raped|choked)\s+me\b",
        r"\bi(?:'m| am| was| have been|'ve been) (?:being )?(?:abused|molested|raped|groomed|sexually assaulted)\b",
        r"\bsomeone (?:is |keeps )?(?:touching|abusing|hitting|beating) me\b",
    ],
    "danger": [
        r"\b(?:in real life|irl|for real|in the real world|outside the game)\b.{0,40}\b(?:in danger|not safe|unsafe"
        r"|scared for my life|being (?:followed|stalked|threatened))\b",
        r"\b(?:in danger|not safe|unsafe|scared for my life|being (?:followed|stalked))\b.{0,40}"
        r"\b(?:in real life|irl|for real|in the real world|outside the game)\b",
        r"\bsomeone is (?:breaking into|trying to get into|outside) my (?:house|home|flat|apartment|room)\b",
        r"\bi(?:'ve| have) (?:taken|swallowed) (?:too many|all (?:the|my)) (?:pills|tablets)\b",
        r"\b(?:call|need) (?:911|999|112|an ambulance|the police)\b",
    ],
}
_DISCLOSURE_PATTERNS = {category: [re.compile(p) for p in patterns] for category, patterns in _DISCLOSURES.items()}


def player_disclosure(text: str) -> str | None:
    """The category (`DISCLOSURE_CATEGORIES`) when a player discloses or asks about real-world self-harm, abuse
    or danger, or None. Read after the text screen's normalisation (look-alikes, spacing, case)."""
    folded = normalise(text)
    for category, patterns in _DISCLOSURE_PATTERNS.items():
        if any(p.search(folded) for p in patterns):
            return category
    return None
