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
from srl_forge.policy import MARKUP

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


# --- prompt injection: text that talks to a model instead of describing the game ------------------
# Screened wherever outside text becomes training data: player utterances (dropped and counted), and
# lore documents, rule texts and persona files (refused, naming the file and line).

PROMPT_INJECTION = re.compile(
    r"ignore (all |any |the )?(previous|prior|above|earlier) (instructions|prompts?|rules)"
    r"|disregard (all |any |the )?(previous|prior|above|your) (instructions|prompts?|rules)"
    r"|system prompt|developer mode|jailbreak|you are now (a|an|the) "
    r"|pretend (you are|to be) (an? )?(ai|assistant|chatgpt)"
    r"|" + MARKUP,
    re.IGNORECASE,
)


def injection_evidence(text: str) -> str | None:
    """The words that read as instructions to a model (prompt injection), or None."""
    match = PROMPT_INJECTION.search(text)
    return match.group(0) if match else None


def injected_lines(text: str) -> list[tuple[int, str]]:
    """(line number, evidence) for every line of a document that reads as instructions to a model."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        evidence = injection_evidence(line)
        if evidence:
            found.append((number, evidence))
    return found
