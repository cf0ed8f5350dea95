"""The game designer's encounters: sampled to cover the rule space, split deterministically.

Sampling is rule-targeted: for every rule, encounters are built to satisfy its condition (and its
event gates) on top of a random base, until the rule fires in at least `k` encounters. Random
encounters are mixed in so that quiet situations are represented too. Everything is seeded.
"""

from __future__ import annotations

import random
import typing
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from srl_forge.encounter import FACTIONS, PLAYER_ITEMS, Encounter, GameState, encounter_field_paths
from srl_forge.hashing import content_hash
from srl_forge.rulebook import Rule, Rulebook
from srl_forge.rules_engine import RulesEngine

Split = Literal["train", "validation", "test"]

NUMERIC_RANGES = {
    "npc.hunger": (0.0, 1.0), "npc.health": (0.0, 1.0),
    "npc.tier": (1, 3), "npc.allies": (0, 6), "player.party_size": (1, 6),
}
UTTERANCES = {
    "approach": ["", "Hello? Is someone there?"],
    "talk": ["Who goes there?", "We mean you no harm.", "What manner of creature are you?"],
    "attack": ["Die, monster!", "For the village!"],
    "threaten": ["Stay back or I'll burn you!", "One more step and you're finished."],
    "offer": ["Take this, and let us pass.", "I brought you something you might like."],
    "invite": ["Come in out of the cold, stranger."],
    "flee": ["Run!"],
    "sneak": [""],
    "steal": [""],
    "trespass": ["These woods belong to no one."],
}


class SampledEncounter(BaseModel):
    model_config = ConfigDict(frozen=True)
    encounter_id: str
    split: Split
    origin: Literal["designer", "player_log"]
    targeted_rule: str | None = None
    encounter: Encounter


class EncounterSet(BaseModel):
    model_config = ConfigDict(frozen=True)
    species: str
    encounters: tuple[SampledEncounter, ...]
    coverage: dict[str, int]  # rule id -> encounters in which it fires
    min_per_rule: int

    @property
    def uncovered(self) -> list[str]:
        return [r for r, n in self.coverage.items() if n < self.min_per_rule]

    def by_split(self, split: Split) -> list[SampledEncounter]:
        return [e for e in self.encounters if e.split == split]


def assign_split(encounter_id: str, validation_fraction: float, test_fraction: float) -> Split:
    """Stable split by hash: an encounter lands in the same split in every re-materialization."""
    position = int(content_hash(f"split:{encounter_id}")[:8], 16) / 0x100000000
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


class EncounterDesigner:
    """Programmatic designer (the embedded default for the 'designer' teacher role)."""

    def __init__(self, rulebook: Rulebook, live_state: GameState, seed: int = 0):
        self.rulebook = rulebook
        self.engine = RulesEngine(rulebook)
        self.live_state = live_state
        self.rng = random.Random(seed)
        self.paths = encounter_field_paths()

    # -- random base ---------------------------------------------------------------------------
    def _options(self, path: str) -> tuple:
        return typing.get_args(self.paths[path])

    def random_base(self) -> dict[str, dict[str, Any]]:
        rng = self.rng
        action = rng.choice(self._options("player.action"))
        kind = rng.choice(self._options("location.kind"))
        return {
            "game": {
                "time_of_day": rng.choices(["night", "dusk", "dawn", "day"], [45, 20, 15, 20])[0],
                "moon_phase": rng.choice(self._options("game.moon_phase")),
                "weather": rng.choice(self._options("game.weather")),
                "live_events": list(self.live_state.live_events),
            },
            "npc": {
                "species": self.rulebook.species,
                "tier": rng.randint(1, 3),
                "hunger": round(rng.random(), 2),
                "health": 1.0 if rng.random() < 0.6 else round(rng.uniform(0.05, 1.0), 2),
                "allies": 0 if rng.random() < 0.5 else rng.randint(1, 4),
            },
            "player": {
                "action": action,
                "utterance": rng.choice(UTTERANCES[action]),
                "items": rng.sample(PLAYER_ITEMS, rng.choice([0, 0, 1, 1, 2])),
                "faction": rng.choice(FACTIONS),
                "party_size": 1 if rng.random() < 0.5 else rng.randint(2, 6),
            },
            "location": {
                "kind": kind,
                "invited": kind == "dwelling" and rng.random() < 0.4,
                "consecrated": kind in ("church", "graveyard") and rng.random() < 0.5,
            },
        }

    # -- satisfying a rule's condition -----------------------------------------------------------
    def _set(self, base: dict, path: str, value: Any) -> None:
        section, name = path.split(".")
        base[section][name] = value

    def _numeric(self, path: str, op: str, bound: float) -> float | int:
        low, high = NUMERIC_RANGES[path]
        if isinstance(low, int):
            candidates = [v for v in range(low, high + 1) if _holds(op, v, bound)]
            return self.rng.choice(candidates) if candidates else low
        lo = bound if op in ("gte", "gt") else low
        hi = bound if op in ("lte", "lt") else high
        value = round(self.rng.uniform(lo, hi), 2)
        if not _holds(op, value, bound):
            value = round(bound + (0.01 if op == "gt" else -0.01 if op == "lt" else 0), 2)
        return min(max(value, low), high)

    def _satisfy(self, base: dict, condition: dict) -> None:
        for key, expected in condition.items():
            if key == "any":
                self._satisfy(base, self.rng.choice(expected))
                continue
            if key == "not":
                continue  # left to chance; the rule is checked after construction
            options = self._options(key)
            ops = expected if isinstance(expected, dict) else {
                "contains" if key in ("player.items", "game.live_events") else "eq": expected}
            section, name = key.split(".")
            for op, value in ops.items():
                current = base[section][name]
                if op == "eq":
                    self._set(base, key, value)
                elif op == "ne":
                    choices = [o for o in (options or (True, False)) if o != value]
                    self._set(base, key, self.rng.choice(choices))
                elif op == "in":
                    self._set(base, key, self.rng.choice(value))
                elif op == "not_in":
                    self._set(base, key, self.rng.choice([o for o in options if o not in value]))
                elif op in ("gt", "gte", "lt", "lte"):
                    self._set(base, key, self._numeric(key, op, value))
                elif op == "contains":
                    self._set(base, key, sorted(set(current) | {value}))
                elif op == "contains_any":
                    self._set(base, key, sorted(set(current) | {self.rng.choice(value)}))
                elif op == "not_contains":
                    self._set(base, key, [v for v in current if v != value])

    def targeted(self, rule: Rule) -> Encounter | None:
        base = self.random_base()
        self._satisfy(base, rule.when)
        events = set(base["game"]["live_events"])
        if rule.events.only_during and not events.intersection(rule.events.only_during):
            events.add(self.rng.choice(rule.events.only_during))
        events -= set(rule.events.not_during)
        base["game"]["live_events"] = sorted(events)
        if base["player"]["action"] not in UTTERANCES or base["player"]["utterance"] not in UTTERANCES[base["player"]["action"]]:
            base["player"]["utterance"] = self.rng.choice(UTTERANCES[base["player"]["action"]])
        try:
            encounter = Encounter.model_validate(base)
        except ValidationError:
            return None
        return encounter if rule in self.engine.fired(encounter) else None

    def random(self) -> Encounter:
        return Encounter.model_validate(self.random_base())

    # -- the set ---------------------------------------------------------------------------------
    def design(
        self,
        min_per_rule: int = 2,
        random_encounters: int = 8,
        validation_fraction: float = 0.15,
        test_fraction: float = 0.2,
        attempts_per_rule: int = 50,
        mined: typing.Iterable[Encounter] = (),
        min_test_encounters: int = 0,
    ) -> EncounterSet:
        chosen: dict[str, SampledEncounter] = {}
        coverage: Counter[str] = Counter()

        def add(encounter: Encounter, origin: str, target: str | None) -> None:
            eid = encounter.encounter_id
            if eid in chosen:
                return
            chosen[eid] = SampledEncounter(
                encounter_id=eid, split=assign_split(eid, validation_fraction, test_fraction),
                origin=origin, targeted_rule=target, encounter=encounter)
            coverage.update(rule.id for rule in self.engine.fired(encounter))

        for encounter in mined:
            add(encounter, "player_log", None)
        for _ in range(random_encounters):
            add(self.random(), "designer", None)
        for rule in self.rulebook.rules:
            attempts = 0
            while coverage[rule.id] < min_per_rule and attempts < attempts_per_rule:
                attempts += 1
                encounter = self.targeted(rule)
                if encounter is not None:
                    add(encounter, "designer", rule.id)
        # A held-out set too small to measure anything is no held-out set: keep designing (rule by
        # rule, so held-out encounters exercise the rules too) until the test split is large enough.
        budget = 200 * max(1, min_test_encounters)
        rules = list(self.rulebook.rules)
        turn = 0
        while sum(e.split == "test" for e in chosen.values()) < min_test_encounters and turn < budget:
            rule = rules[turn % len(rules)]
            turn += 1
            encounter = self.targeted(rule)
            if encounter is not None:
                add(encounter, "designer", rule.id)
        return EncounterSet(
            species=self.rulebook.species,
            encounters=tuple(chosen.values()),
            coverage={rule.id: coverage[rule.id] for rule in self.rulebook.rules},
            min_per_rule=min_per_rule,
        )


def _holds(op: str, value: float, bound: float) -> bool:
    return {"gt": value > bound, "gte": value >= bound, "lt": value < bound, "lte": value <= bound}[op]
