"""The programmatic expert's spoken lines, composed from the encounter.

A line is an *opening* that answers something in the encounter (the item the player carries, what
they do or say, their faction, a live event, their numbers), the species' way of addressing the
player, and an *intent* clause for the chosen action with a *where* phrase (the place, the hour,
the weather). Candidates are tried in a seeded order; the first that meets the species' dialogue
constraints, refers to two kinds of things in the encounter and is not a stock phrase is spoken.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from srl_forge.encounter import Encounter
from srl_forge.errors import InputError, raise_all, validation_errors
from srl_forge.grounding import (
    ITEM_TERMS,
    NUMBER_WORDS,
    PLACE_TERMS,
    grounding_score,
    grounding_terms,
    is_stock,
)
from srl_forge.hashing import files_version
from srl_forge.rulebook import Rulebook
from srl_forge.rules_engine import DialogueConstraints
from srl_forge.text_screen import screen
from srl_forge.yaml_files import load_yaml, read_source_file

FOE_NAMES = {
    "villagers": "villager",
    "hunters": "hunter",
    "church": "priest",
    "necromancers": "necromancer",
    "merchants": "merchant",
    "thieves_guild": "thief",
}
ACTION_OPENINGS = {
    "approach": "You come closer, {address}?",
    "talk": "You want words with me, {address}?",
    "attack": "You strike at me, {address}?",
    "threaten": "You dare threaten me, {address}?",
    "offer": "An offer, {address}?",
    "invite": "You invite me in, {address}?",
    "flee": "Running already, {address}?",
    "sneak": "You sneak like a thief, {address}.",
    "steal": "You came to steal, {address}?",
    "trespass": "You trespass here, {address}.",
}
ITEM_OPENINGS = (
    "That {item} will not save you, {address}.",
    "You bring that {item} here, {address}?",
    "Put away your {item}, {address}.",
)
EVENT_OPENINGS = {
    "blood_moon": "Under the blood moon, {address}?",
    "truce_of_ashes": "During the truce, {address}?",
    "hunters_festival": "On your festival night, {address}?",
    "eclipse": "In the eclipse, {address}?",
}
HOUR_WHERE = {"dawn": "before the dawn", "day": "under this sun", "dusk": "at dusk", "night": "tonight"}
WEATHER_WHERE = {"rain": "in the rain", "storm": "in this storm", "fog": "in this fog", "clear": "under the stars"}


DEFAULT_STEP_BACK = (
    "The night can wait, {address}. If something is hurting you beyond this game, "
    "reach for someone you trust, or a helpline, tonight."
)


class Voice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    species: str
    address: tuple[str, ...]
    intents: dict[str, tuple[str, ...]]
    stock_lines: tuple[str, ...] = ()
    groans: tuple[str, ...] = ()  # a voice of groans only: lines are groans around single words
    # what the monster says when a player seems to be at risk for real (`guardrails.player_disclosure`):
    # still in the world, never menacing, pointing to help outside the game
    step_back: tuple[str, ...] = (DEFAULT_STEP_BACK,)

    def stock_for(self, faction: str) -> list[str]:
        return [line.replace("{foe}", foe_name(faction)) for line in self.stock_lines]


def foe_name(faction: str) -> str:
    return FOE_NAMES.get(faction, faction.rstrip("s"))


def voice_source_version(voices_root: Path, species: str, max_bytes: int) -> str:
    """The version of a species' voice file as on disk (what `load_voice` reads)."""
    return files_version([(f"{species}.yaml", voices_root / f"{species}.yaml")], max_bytes)


def load_voice(voices_root: Path, rulebook: Rulebook) -> Voice:
    path = voices_root / f"{rulebook.species}.yaml"
    try:
        raw = load_yaml(read_source_file(path))
    except FileNotFoundError as exc:
        raise InputError(path, "file", f"no voice file for {rulebook.species}") from exc
    except yaml.YAMLError as exc:
        raise InputError(path, "yaml", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(path, "document", "a voice file is a mapping with 'species', 'address' and 'intents'")
    problems: list[InputError] = []  # every problem of the file, reported together
    if raw.get("species") != rulebook.species:
        problems.append(InputError(path, "species", f"expected species {rulebook.species!r}"))
    try:
        voice = Voice.model_validate(raw)
    except ValidationError as exc:
        voice = None
        problems.extend(validation_errors(path, exc))
    # the voice's words become the expert's lines, so the monster's trained speech: screened like lore
    # (read from the file as written, so a broken field elsewhere does not hide them)
    fields = [(name, raw.get(name)) for name in ("address", "stock_lines", "groans", "step_back")]
    intents = raw.get("intents") if isinstance(raw.get("intents"), dict) else {}
    fields += [(f"intents.{action}", lines) for action, lines in intents.items()]
    for field, lines in fields:
        for i, line in enumerate(lines if isinstance(lines, list) else []):
            if isinstance(line, str) and (finding := screen(line)):
                problems.append(InputError(path, f"{field}[{i}]", f"reads as instructions to a model ({finding})"))
    for action in rulebook.actions:
        if not intents.get(action):
            problems.append(InputError(path, f"intents.{action}", "each action needs at least one intent"))
    for action in sorted(set(intents) - set(rulebook.actions)):
        problems.append(InputError(path, f"intents.{action}", "not an action of this species"))
    raise_all(problems)
    return voice


def _openings(encounter: Encounter) -> list[str]:
    p, g = encounter.player, encounter.game
    openings = [ACTION_OPENINGS[p.action]]
    openings += [
        t.replace("{item}", ITEM_TERMS.get(i, [i.replace("_", " ")])[0]) for i in p.items for t in ITEM_OPENINGS
    ]
    openings += [EVENT_OPENINGS[e] for e in g.live_events if e in EVENT_OPENINGS]
    openings.append(f"A {foe_name(p.faction)} comes calling, {{address}}?")
    if p.party_size > 1:
        openings.append(f"All {NUMBER_WORDS.get(p.party_size, 'many')} of you, {{address}}?")
    return openings


def _wheres(encounter: Encounter) -> list[str]:
    return [
        f"in this {PLACE_TERMS[encounter.location.kind][0]}",
        HOUR_WHERE[encounter.game.time_of_day],
        WEATHER_WHERE[encounter.game.weather],
    ]


def _single_words(encounter: Encounter) -> list[str]:
    p = encounter.player
    out = [ITEM_TERMS.get(i, [i])[0].split()[-1] for i in p.items]
    out += [
        PLACE_TERMS[encounter.location.kind][0],
        foe_name(p.faction),
        HOUR_WHERE[encounter.game.time_of_day].split()[-1],
    ]
    return out


def candidate_lines(voice: Voice, encounter: Encounter, action: str, rng: random.Random) -> list[str]:
    foe = foe_name(encounter.player.faction)
    if voice.groans:
        refs = _single_words(encounter)
        lines = [f"{g}... {a}... {b}..." for g in voice.groans for a in refs for b in refs if a != b]
        rng.shuffle(lines)
        return lines
    lines = []
    for opening in _openings(encounter):
        for address in voice.address:
            if foe in opening and "{foe}" in address:
                continue  # "A hunter comes calling, my dear hunter?" names them twice
            for intent in voice.intents[action]:
                for where in _wheres(encounter):
                    text = intent.replace("{where}", where)
                    text = text[0].upper() + text[1:]
                    lines.append(f"{opening.replace('{address}', address)} {text}".replace("{foe}", foe))
    rng.shuffle(lines)
    return lines


def compose_line(
    voice: Voice,
    encounter: Encounter,
    action: str,
    constraints: DialogueConstraints,
    rng: random.Random,
    markers: tuple[str, ...] = (),
) -> str:
    """The first candidate that is in character, grounded twice over and not stock; else the best one."""
    terms = grounding_terms(encounter, exclude=markers)
    stock = voice.stock_for(encounter.player.faction)
    best, best_key = None, None
    for line in candidate_lines(voice, encounter, action, rng)[:400]:
        key = (
            not constraints.check(line),
            grounding_score(line, terms, encounter.player.utterance),
            not is_stock(line, stock),
        )
        if key == (True, 1.0, True):
            return line
        if best_key is None or key > best_key:
            best, best_key = line, key
    return best or "..."


def step_back_line(voice: Voice, encounter: Encounter, rng: random.Random) -> str:
    """The voice's step-back line for a player who may be at risk for real: no menace, help named."""
    foe = foe_name(encounter.player.faction)
    address = rng.choice(voice.address).replace("{foe}", foe) if voice.address else "traveller"
    return rng.choice(voice.step_back).replace("{address}", address).replace("{foe}", foe)
