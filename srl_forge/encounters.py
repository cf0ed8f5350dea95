"""The game designer's encounters: situations where the decision matters, split deterministically.

The designer builds *scenarios*. Each starts from an encounter targeted at one rule (its condition
and event gates satisfied on top of a random base) or from a random one, and often gets a
*near-miss* partner: the same situation with one feature flipped (invited or not, dusk or dawn,
garlic or none...) that changes the rules engine's top action. A scenario's members share its
split, assigned by a hash of the scenario id, so near-misses sit side by side and a scenario lands
in the same split in every re-materialization.

Selection is stratified per split: no action may be the engine's top choice in more than
`max_top_share` of a split, and encounters where the rules leave every action acceptable ("open")
are kept to a small labelled minority (`max_open_share`). The designer keeps designing until every
split reaches its size (or the attempt budget runs out, which the task-difficulty check reports).
Everything is seeded.
"""

from __future__ import annotations

import random
import typing
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srl_forge.artifacts import StoredArtifact
from srl_forge.encounter import (
    FACTIONS,
    PLAYER_ITEMS,
    Encounter,
    GameState,
    encounter_field_paths,
)
from srl_forge.grading import (
    DecisionLabel,
    action_scores,
    best_constant_action,
    label_decision,
    reference_scores,
    task_profile,
)
from srl_forge.hashing import content_hash
from srl_forge.rulebook import Rule, Rulebook
from srl_forge.rules_engine import RulesEngine

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")

NUMERIC_RANGES = {
    "npc.hunger": (0.0, 1.0),
    "npc.health": (0.0, 1.0),
    "npc.tier": (1, 3),
    "npc.allies": (0, 6),
    "player.party_size": (1, 6),
}
UTTERANCES = {
    "approach": ["", "Hello? Is someone there?", "Easy now, I'm only passing through."],
    "talk": [
        "Who goes there?",
        "We mean you no harm.",
        "What manner of creature are you?",
        "Tell me what you want from this place.",
    ],
    "attack": ["Die, monster!", "For the village!", "Back to the grave with you!"],
    "threaten": [
        "Stay back or I'll burn you!",
        "One more step and you're finished.",
        "I know what you are, and I know how to end you.",
    ],
    "offer": [
        "Take this, and let us pass.",
        "I brought you something you might like.",
        "A gift, in exchange for safe passage.",
    ],
    "invite": ["Come in out of the cold, stranger.", "You look weary. Will you come inside?"],
    "flee": ["Run!", "Get away from it!"],
    "sneak": [""],
    "steal": ["", "Quiet... grab it and go."],
    "trespass": ["These woods belong to no one.", "We'll camp wherever we please."],
}
# One-feature flips for near-misses: the value an encounter's feature is flipped to.
TIME_FLIPS = {"night": ("dawn", "day"), "dusk": ("dawn", "day"), "dawn": ("night", "dusk"), "day": ("dusk", "night")}
MOON_FLIPS = {"full": ("waxing", "waning"), "waxing": ("full",), "waning": ("full",), "new": ("full",)}
WEATHER_FLIPS = {"rain": ("clear",), "clear": ("rain",), "storm": ("clear",), "fog": ("rain",)}
ACTION_FLIPS = {
    "threaten": ("talk", "offer"),
    "talk": ("threaten", "attack"),
    "offer": ("threaten", "talk"),
    "attack": ("talk", "offer"),
    "approach": ("threaten", "steal"),
    "steal": ("talk", "approach"),
    "sneak": ("talk", "threaten"),
    "trespass": ("talk", "offer"),
    "invite": ("threaten", "talk"),
    "flee": ("attack", "talk"),
}


class DesignSpec(BaseModel):
    """How many encounters per split and how they are balanced (the `encounters` asset's config)."""

    model_config = ConfigDict(frozen=True)
    train_size: int = Field(default=300, ge=1)
    validation_size: int = Field(default=60, ge=1)
    test_size: int = Field(default=60, ge=1)
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)  # of scenario hashes
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    min_per_rule: int = Field(default=3, ge=0)  # every rule fires in at least this many encounters
    max_top_share: float = Field(default=0.28, gt=0, le=1)  # per split, per action
    max_open_share: float = Field(default=0.08, ge=0, le=1)  # per split: every action acceptable
    near_miss_rate: float = Field(default=0.6, ge=0, le=1)  # scenarios that try a near-miss partner
    random_share: float = Field(default=0.2, ge=0, le=1)  # scenarios from a random base, not a rule
    max_attempts: int = Field(default=30000, ge=1)  # scenarios tried before giving up

    def size(self, split: Split) -> int:
        return {"train": self.train_size, "validation": self.validation_size, "test": self.test_size}[split]


class SampledEncounter(BaseModel):
    model_config = ConfigDict(frozen=True)
    encounter_id: str
    split: Split
    origin: Literal["designer", "player_log", "teacher_proposal"]  # the last: an LLM designer's proposal
    targeted_rule: str | None = None
    encounter: Encounter
    scenario_id: str | None = None  # near-misses share their scenario (and so their split)
    near_miss_of: str | None = None  # the encounter this one differs from in one feature
    flipped: str | None = None  # "path: old -> new"
    label: DecisionLabel | None = None


class EncounterSet(StoredArtifact):
    model_config = ConfigDict(frozen=True)
    species: str
    encounters: tuple[SampledEncounter, ...]
    coverage: dict[str, int]  # rule id -> encounters in which it fires
    min_per_rule: int
    spec: DesignSpec | None = None
    attempts: int = 0

    @property
    def uncovered(self) -> list[str]:
        return [r for r, n in self.coverage.items() if n < self.min_per_rule]

    def by_split(self, split: Split) -> list[SampledEncounter]:
        return [e for e in self.encounters if e.split == split]


def assign_split(key: str, validation_fraction: float, test_fraction: float) -> Split:
    """Stable split by hash: a scenario lands in the same split in every re-materialization."""
    position = int(content_hash(f"split:{key}")[:8], 16) / 0x100000000
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def condition_paths(condition: dict) -> list[str]:
    """The encounter paths a rule condition reads, in the order it names them (through `any` and `not`)."""
    paths: list[str] = []
    for key, value in condition.items():
        if key == "any":
            paths += [p for sub in value for p in condition_paths(sub)]
        elif key == "not":
            paths += condition_paths(value)
        else:
            paths.append(key)
    return paths


class _Quota:
    """Per-split counts that enforce the sizes and the balance of a design."""

    def __init__(self, spec: DesignSpec):
        self.spec = spec
        self.size: Counter[str] = Counter()
        self.top: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
        self.open: Counter[str] = Counter()

    def full(self, split: Split) -> bool:
        return self.size[split] >= self.spec.size(split)

    def all_full(self) -> bool:
        return all(self.full(s) for s in SPLITS)

    def fits(self, split: Split, labels: list[DecisionLabel]) -> bool:
        target = self.spec.size(split)
        if self.size[split] + len(labels) > target:
            return False
        top_cap = max(1, int(self.spec.max_top_share * target))
        open_cap = int(self.spec.max_open_share * target)
        tops = Counter(a for label in labels for a in label.top_actions)
        return (
            all(self.top[split][a] + n <= top_cap for a, n in tops.items())
            and self.open[split] + sum(label.open for label in labels) <= open_cap
        )

    def take(self, split: Split, label: DecisionLabel) -> None:
        self.size[split] += 1
        self.top[split].update(label.top_actions)
        self.open[split] += label.open


class EncounterDesigner:
    """Programmatic designer (the embedded default for the 'designer' teacher role)."""

    def __init__(self, rulebook: Rulebook, live_state: GameState, seed: int = 0):
        self.rulebook = rulebook
        self.engine = RulesEngine(rulebook)
        self.live_state = live_state
        self.rng = random.Random(seed)
        self.paths = encounter_field_paths()
        # the features the rules look at: near-misses flip one of these
        self.pivots = sorted({p for r in rulebook.rules for p in condition_paths(r.when)})
        self.gated_events = sorted({e for r in rulebook.rules for e in r.events.only_during + r.events.not_during})

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
            ops = (
                expected
                if isinstance(expected, dict)
                else {"contains" if key in ("player.items", "game.live_events") else "eq": expected}
            )
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

    def _fix_utterance(self, base: dict) -> None:
        if base["player"]["utterance"] not in UTTERANCES[base["player"]["action"]]:
            base["player"]["utterance"] = self.rng.choice(UTTERANCES[base["player"]["action"]])

    def targeted(self, rule: Rule) -> Encounter | None:
        base = self.random_base()
        self._satisfy(base, rule.when)
        events = set(base["game"]["live_events"])
        if rule.events.only_during and not events.intersection(rule.events.only_during):
            events.add(self.rng.choice(rule.events.only_during))
        events -= set(rule.events.not_during)
        base["game"]["live_events"] = sorted(events)
        self._fix_utterance(base)
        try:
            encounter = Encounter.model_validate(base)
        except ValidationError:
            return None
        return encounter if rule in self.engine.fired(encounter) else None

    def random(self) -> Encounter:
        return Encounter.model_validate(self.random_base())

    # -- near-misses ----------------------------------------------------------------------------
    def flips(self, encounter: Encounter) -> list[tuple[str, Encounter]]:
        """Every one-feature variant of `encounter` along the features the rules look at."""
        data = encounter.model_dump(mode="python")
        variants: list[tuple[str, dict]] = []

        def variant(path: str, old: Any, new: Any) -> None:
            changed = {k: dict(v) for k, v in data.items()}
            section, name = path.split(".")
            changed[section][name] = new
            if path == "player.action":
                changed["player"]["utterance"] = self.rng.choice(UTTERANCES[new])
            variants.append((f"{path}: {_show(old)} -> {_show(new)}", changed))

        g, n, p, loc = encounter.game, encounter.npc, encounter.player, encounter.location
        for path in self.pivots:
            if path == "game.time_of_day":
                variant(path, g.time_of_day, self.rng.choice(TIME_FLIPS[g.time_of_day]))
            elif path == "game.moon_phase":
                variant(path, g.moon_phase, self.rng.choice(MOON_FLIPS[g.moon_phase]))
            elif path == "game.weather":
                variant(path, g.weather, self.rng.choice(WEATHER_FLIPS[g.weather]))
            elif path == "player.action":
                variant(path, p.action, self.rng.choice(ACTION_FLIPS[p.action]))
            elif path == "player.faction":
                variant(
                    path,
                    p.faction,
                    "villagers"
                    if p.faction != "villagers"
                    else self.rng.choice([f for f in FACTIONS if f != "villagers"]),
                )
            elif path == "player.party_size":
                variant(path, p.party_size, 1 if p.party_size >= 3 else 4)
            elif path == "npc.hunger":
                variant(path, n.hunger, 0.2 if n.hunger >= 0.5 else 0.85)
            elif path == "npc.health":
                variant(path, n.health, 1.0 if n.health < 0.5 else 0.15)
            elif path == "npc.allies":
                variant(path, n.allies, 0 if n.allies >= 1 else 3)
            elif path == "location.invited" and loc.kind == "dwelling":  # an invitation means a threshold
                variant(path, loc.invited, not loc.invited)
            elif path == "location.consecrated":
                variant(path, loc.consecrated, not loc.consecrated)
            elif path == "location.kind" and not loc.invited:
                variant(path, loc.kind, self.rng.choice([k for k in self._options(path) if k != loc.kind]))
            elif path == "player.items":
                for item in self._rule_items():
                    items = set(p.items) ^ {item}
                    variant(path, f"{'+' if item in items else '-'}{item}", sorted(items))
        for event in self.gated_events:
            events = set(g.live_events) ^ {event}
            variant("game.live_events", f"{'+' if event in events else '-'}{event}", sorted(events))
        out = []
        for description, changed in variants:
            try:
                out.append((description, Encounter.model_validate(changed)))
            except ValidationError:
                continue
        return out

    def _rule_items(self) -> list[str]:
        items: set[str] = set()

        def walk(condition: dict) -> None:
            for key, value in condition.items():
                if key == "any":
                    for sub in value:
                        walk(sub)
                elif key == "not":
                    walk(value)
                elif key == "player.items":
                    values = value.values() if isinstance(value, dict) else [value]
                    for v in values:
                        items.update(v if isinstance(v, list) else [v])

        for rule in self.rulebook.rules:
            walk(rule.when)
        return sorted(i for i in items if i in PLAYER_ITEMS)

    def near_miss(self, encounter: Encounter, label: DecisionLabel) -> tuple[str, Encounter, DecisionLabel] | None:
        """A one-feature variant whose top action differs, or None."""
        options = self.flips(encounter)
        self.rng.shuffle(options)
        for description, flipped in options:
            flipped_label = label_decision(self.engine.decide(flipped), self.rulebook)
            if set(flipped_label.top_actions) != set(label.top_actions) and not flipped_label.conflict:
                return description, flipped, flipped_label
        return None

    # -- the set ---------------------------------------------------------------------------------
    def design(
        self,
        spec: DesignSpec | None = None,
        mined: typing.Iterable[Encounter] = (),
        went_wrong: frozenset[str] = frozenset(),
        proposed: typing.Iterable[Encounter] = (),
        **overrides,
    ) -> EncounterSet:
        """`mined`: encounters from player logs, offered before any designed one; those whose served answer went
        wrong (`went_wrong`, encounter ids) are oversampled: offered first, each with a near-miss partner.
        `proposed`: an LLM designer's encounters, offered next, kept only where they fit the same balance."""
        spec = (spec or DesignSpec()).model_copy(update=overrides) if overrides else (spec or DesignSpec())
        spec = DesignSpec.model_validate(spec.model_dump())
        chosen: dict[str, SampledEncounter] = {}
        coverage: Counter[str] = Counter()
        quota = _Quota(spec)
        labels: dict[str, DecisionLabel] = {}

        def label_of(encounter: Encounter) -> DecisionLabel:
            if encounter.encounter_id not in labels:
                labels[encounter.encounter_id] = label_decision(self.engine.decide(encounter), self.rulebook)
            return labels[encounter.encounter_id]

        def add(
            encounter: Encounter,
            split: Split,
            origin: str,
            target: str | None,
            scenario: str,
            near_miss_of: str | None = None,
            flipped: str | None = None,
        ) -> None:
            label = label_of(encounter)
            quota.take(split, label)
            chosen[encounter.encounter_id] = SampledEncounter(
                encounter_id=encounter.encounter_id,
                split=split,
                origin=origin,
                targeted_rule=target,
                encounter=encounter,
                scenario_id=scenario,
                near_miss_of=near_miss_of,
                flipped=flipped,
                label=label,
            )
            coverage.update(rule.id for rule in self.engine.fired(encounter))

        def offer(base: Encounter, origin: str, target: str | None) -> None:
            eid = base.encounter_id
            if eid in chosen:
                return
            split = assign_split(eid, spec.validation_fraction, spec.test_fraction)
            if quota.full(split):
                return
            label = label_of(base)
            if label.conflict:
                return  # the rules contradict each other: no ground truth to learn from
            wants_partner = eid in went_wrong or self.rng.random() < spec.near_miss_rate
            partner = self.near_miss(base, label) if wants_partner else None
            if partner and partner[1].encounter_id not in chosen and quota.fits(split, [label, partner[2]]):
                add(base, split, origin, target, eid)
                add(partner[1], split, origin, target, eid, near_miss_of=eid, flipped=partner[0])
            elif quota.fits(split, [label]):
                add(base, split, origin, target, eid)

        for encounter in sorted(mined, key=lambda e: e.encounter_id not in went_wrong):  # stable: log order kept
            offer(encounter, "player_log", None)
        for encounter in proposed:
            offer(encounter, "teacher_proposal", None)
        decisive = [r for r in self.rulebook.rules if r.forbid or r.require or r.prefer]
        rules = decisive or list(self.rulebook.rules)
        attempts = 0
        while attempts < spec.max_attempts and not quota.all_full():
            # rules still under-covered first, then every rule in turn, with random scenarios mixed in
            under = [r for r in self.rulebook.rules if coverage[r.id] < spec.min_per_rule]
            attempts += 1
            if under and attempts % 2:
                rule = under[attempts % len(under)]
            elif self.rng.random() < spec.random_share or not rules:
                offer(self.random(), "designer", None)
                continue
            else:
                rule = rules[attempts % len(rules)]
            encounter = self.targeted(rule)
            if encounter is not None:
                offer(encounter, "designer", rule.id)
        return EncounterSet(
            species=self.rulebook.species,
            encounters=tuple(chosen.values()),
            coverage={rule.id: coverage[rule.id] for rule in self.rulebook.rules},
            min_per_rule=spec.min_per_rule,
            spec=spec,
            attempts=attempts,
        )


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _holds(op: str, value: float, bound: float) -> bool:
    return {"gt": value > bound, "gte": value >= bound, "lt": value < bound, "lte": value <= bound}[op]


# --- checks on a rulebook and an encounter set ------------------------------------------------


def rule_conflicts(rulebook: Rulebook, samples_per_rule: int = 20, seed: int = 0) -> list[dict]:
    """Unresolved conflicts found by deciding encounters built to fire each rule (under every event)."""
    engine = RulesEngine(rulebook)
    found: dict[tuple, dict] = {}
    for events in [()] + [(e,) for e in rulebook.known_events]:
        designer = EncounterDesigner(rulebook, GameState(live_events=events), seed=seed)
        for rule in rulebook.rules:
            for _ in range(samples_per_rule):
                encounter = designer.targeted(rule)
                if encounter is None:
                    continue
                for conflict in engine.decide(encounter).conflicts:
                    key = (conflict.action, conflict.rule_ids)
                    found.setdefault(
                        key,
                        {
                            "rules": list(conflict.rule_ids),
                            "action": conflict.action,
                            "reason": conflict.reason,
                            "example": encounter.model_dump(mode="json"),
                        },
                    )
    return list(found.values())


def task_difficulty_report(encounter_set: EncounterSet, engine: RulesEngine) -> dict[str, dict]:
    """Per split: size, shares, and the best constant and random-acceptable policies' scores."""
    report = {}
    for split in SPLITS:
        items = [e for e in encounter_set.by_split(split) if e.label is not None]
        labels = [e.label for e in items]
        scores = [action_scores(engine.decide(e.encounter), engine.vocabulary) for e in items]
        refs = reference_scores(
            labels,
            scores,
            engine.vocabulary,
            constant=best_constant_action(labels, engine.vocabulary) if labels else None,
        )
        report[split] = {
            **task_profile(labels),
            "near_miss_share": sum(e.near_miss_of is not None for e in items) * 2 / max(1, len(items)),
            "best_constant": refs["best_constant"].model_dump(),
            "random_acceptable": refs["random_acceptable"].model_dump(),
        }
    return report
