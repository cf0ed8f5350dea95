"""Verifiable signs that a spoken line answers *this* encounter.

A line is grounded when it refers to something in the encounter — the player's faction, items,
action or words, the place, the hour, the moon, the weather, a live event, the size of the party —
through the surface forms below. The species' own voice markers never count (a vampire saying
"the night" at night is its voice, not an answer). Repeating four or more consecutive words of the
player's sentence is parroting, not answering. Pure functions: the reward, the expert and the
evaluation share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

try:
    from cydifflib import SequenceMatcher
except ImportError:  # pragma: no cover - same values, slower
    from difflib import SequenceMatcher

from srl_forge.encounter import Encounter

FACTION_TERMS = {
    "villagers": ["villager", "village folk", "peasant"],
    "hunters": ["hunter"],
    "church": ["priest", "church"],
    "necromancers": ["necromancer"],
    "merchants": ["merchant", "trader"],
    "thieves_guild": ["thief", "thieves"],
}
ITEM_TERMS = {
    "holy_symbol": ["holy symbol", "cross"],
    "silver_weapon": ["silver"],
    "garlic": ["garlic"],
    "torch": ["torch", "flame", "fire"],
    "stake": ["stake"],
    "wolfsbane": ["wolfsbane"],
    "fresh_corpse": ["corpse", "body"],
    "gold": ["gold", "coin"],
    "spellbook": ["spellbook", "grimoire"],
    "phylactery": ["phylactery", "vessel"],
}
PLACE_TERMS = {
    "dwelling": ["house", "home", "threshold", "door", "hearth"],
    "graveyard": ["graveyard", "headstone"],
    "forest": ["forest", "woods", "trees"],
    "crypt": ["crypt", "tomb"],
    "village": ["village", "square"],
    "ruins": ["ruins", "rubble"],
    "church": ["church", "chapel", "altar"],
    "lair": ["lair", "den"],
    "road": ["road", "path"],
}
HOUR_TERMS = {
    "dawn": ["dawn", "sunrise", "sun"],
    "day": ["daylight", "sun", "noon"],
    "dusk": ["dusk", "twilight", "sunset"],
    "night": ["tonight", "midnight", "moonlight"],
}
MOON_TERMS = {"full": ["full moon"], "new": ["new moon", "moonless"], "waxing": ["waxing"], "waning": ["waning"]}
WEATHER_TERMS = {
    "rain": ["rain"],
    "storm": ["storm", "thunder"],
    "fog": ["fog", "mist"],
    "clear": ["stars", "clear sky"],
}
ACTION_TERMS = {
    "approach": ["approach", "closer"],
    "talk": ["talk", "words", "speak", "question"],
    "attack": ["strike", "attack", "blade", "blow"],
    "threaten": ["threat", "dare"],
    "offer": ["offer", "gift"],
    "invite": ["invit"],
    "flee": ["run", "flee", "running"],
    "sneak": ["sneak", "creep", "skulk"],
    "steal": ["steal", "stolen", "thieving"],
    "trespass": ["trespass"],
}
EVENT_TERMS = {
    "blood_moon": ["blood moon"],
    "truce_of_ashes": ["truce"],
    "hunters_festival": ["festival"],
    "eclipse": ["eclipse"],
}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
STOP_WORDS = {
    "there",
    "their",
    "these",
    "those",
    "about",
    "would",
    "could",
    "should",
    "where",
    "which",
    "whose",
    "while",
    "someone",
    "something",
    "please",
    "stranger",
    "little",
    "through",
    "wherever",
    "going",
}
PARROT_WORDS = 4  # this many consecutive words copied from the player's sentence is parroting
WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


GROUNDING_KINDS = ("faction", "item", "action", "place", "hour", "moon", "weather", "event", "party", "words")


def grounding_terms(encounter: Encounter, exclude: Iterable[str] = ()) -> dict[str, list[str]]:
    """Reference kind -> the surface forms that refer to it in this encounter (lower case)."""
    g, p, loc = encounter.game, encounter.player, encounter.location
    terms: dict[str, list[str]] = {
        "faction": FACTION_TERMS.get(p.faction, [p.faction.rstrip("s")]),
        "item": [t for item in p.items for t in ITEM_TERMS.get(item, [item.replace("_", " ")])],
        "action": ACTION_TERMS.get(p.action, [p.action]),
        "place": PLACE_TERMS.get(loc.kind, [loc.kind]),
        "hour": HOUR_TERMS[g.time_of_day],
        "moon": MOON_TERMS[g.moon_phase],
        "weather": WEATHER_TERMS[g.weather],
        "event": [t for e in g.live_events for t in EVENT_TERMS.get(e, [e.replace("_", " ")])],
        "party": ["alone"]
        if p.party_size == 1
        else ["all of you", "your friends", NUMBER_WORDS.get(p.party_size, "many")],
        "words": sorted({w for w in words(p.utterance) if len(w) >= 5 and w not in STOP_WORDS}),
    }
    excluded = {e.lower() for e in exclude}
    return {kind: [t for t in forms if t not in excluded] for kind, forms in terms.items() if forms}


def referenced_kinds(line: str, terms: dict[str, Sequence[str]]) -> list[str]:
    lowered = line.lower()
    return [kind for kind, forms in terms.items() if any(re.search(rf"\b{re.escape(form)}", lowered) for form in forms)]


def parrots(line: str, utterance: str, n: int = PARROT_WORDS) -> bool:
    """True when the line copies `n` consecutive words of the player's sentence (or all of a shorter one)."""
    said = words(utterance)
    if len(said) < 2:
        return False
    spoken = " " + " ".join(words(line)) + " "
    size = min(n, len(said))
    return any(f" {' '.join(said[i : i + size])} " in spoken for i in range(len(said) - size + 1))


def grounding_score(line: str, terms: dict[str, Sequence[str]], utterance: str) -> float:
    """0.5 per kind of reference to the encounter, at most 1.0; 0 when the line parrots the player."""
    if parrots(line, utterance):
        return 0.0
    return min(1.0, 0.5 * len(referenced_kinds(line, terms)))


STOCK_SIMILARITY = 0.8  # difflib ratio at or above which a line is a species' stock phrase


def stock_similarity(line: str, stock_lines: Sequence[str]) -> float:
    lowered = " ".join(words(line))
    return max(
        (SequenceMatcher(None, " ".join(words(s)), lowered, autojunk=False).ratio() for s in stock_lines), default=0.0
    )


def is_stock(line: str, stock_lines: Sequence[str]) -> bool:
    return stock_similarity(line, stock_lines) >= STOCK_SIMILARITY
