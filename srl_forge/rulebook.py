"""Rules as versioned data: YAML per species plus global rules, validated on load.

A rule names the lore document it derives from, a condition over the encounter, and effects:
forbidden, required and preferred actions, and dialogue constraints. Live events in the game
state switch rules on (`events.only_during`) and off (`events.not_during`).

Condition grammar (a mapping, all entries must hold):
    <path>: <value>                 equality (for list fields such as player.items: contains)
    <path>: {<op>: <value>, ...}    ops: eq ne in not_in gt gte lt lte contains contains_any not_contains
    any: [<condition>, ...]         at least one holds
    not: <condition>                does not hold
An empty or missing `when` always holds.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srl_forge.artifacts import StoredArtifact
from srl_forge.encounter import Encounter, GameState, encounter_field_paths
from srl_forge.errors import InputError, InputErrors, raise_all, validation_errors
from srl_forge.hashing import content_hash, files_version
from srl_forge.species import validate_species_id
from srl_forge.text_screen import screen
from srl_forge.yaml_files import load_yaml, read_source_file

COMPARE_OPS = {"gt", "gte", "lt", "lte"}
MEMBER_OPS = {"in", "not_in"}
LIST_OPS = {"contains", "contains_any", "not_contains"}
ALL_OPS = {"eq", "ne"} | COMPARE_OPS | MEMBER_OPS | LIST_OPS


class DialogueRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    markers_any: tuple[str, ...] = ()  # at least one must appear in the line
    banned_words: tuple[str, ...] = ()
    max_words: int | None = Field(default=None, ge=1)


class EventGate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    only_during: tuple[str, ...] = ()  # rule is on only while one of these events is live
    not_during: tuple[str, ...] = ()  # rule is off while one of these events is live

    def is_on(self, live_events: typing.Iterable[str]) -> bool:
        live = set(live_events)
        if self.only_during and not live.intersection(self.only_during):
            return False
        return not live.intersection(self.not_during)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    source: str  # lore document id, "<folder>/<file stem>"
    description: str
    priority: int = Field(default=10, ge=0, le=1000)
    when: dict[str, Any] = Field(default_factory=dict)
    forbid: tuple[str, ...] = ()
    require: tuple[str, ...] = ()  # the monster must take one of these
    prefer: tuple[str, ...] = ()
    dialogue: DialogueRule | None = None
    events: EventGate = EventGate()

    def is_on(self, live_events: typing.Iterable[str]) -> bool:
        return self.events.is_on(live_events)

    def matches(self, encounter: Encounter) -> bool:
        return evaluate_condition(self.when, encounter)


# What a game may report about how an encounter went after a served answer (`POST /v1/feedback`): each
# label of the closed set says whether the monster's answer did what it should (`as_intended`), went wrong
# (the encounter is worth learning again: mined encounters that went wrong are oversampled), or neither.
OutcomeVerdict = typing.Literal["as_intended", "went_wrong", "neutral"]
OUTCOME_LABEL = r"^[a-z][a-z0-9_]{0,39}$"


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    species: str | None = None
    actions: tuple[str, ...] = ()
    events: tuple[str, ...] = ()  # event names known to the world (global file)
    # outcome label -> verdict: the shared set (global file) plus the species' own
    outcomes: dict[typing.Annotated[str, Field(pattern=OUTCOME_LABEL)], OutcomeVerdict] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)


class Rulebook(BaseModel):
    """The rules that apply to one species: the global rules plus its own."""

    model_config = ConfigDict(frozen=True)
    species: str
    actions: tuple[str, ...]
    shared_actions: tuple[str, ...]
    known_events: tuple[str, ...]
    rules: tuple[Rule, ...]
    outcomes: dict[str, OutcomeVerdict] = Field(default_factory=dict)  # what a game may report (feedback)

    @property
    def version(self) -> str:
        return content_hash(self)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def active_rules(self, live_events: typing.Iterable[str]) -> list[Rule]:
        live = tuple(live_events)
        return [rule for rule in self.rules if rule.is_on(live)]


class CompiledRules(StoredArtifact):
    """A species' rulebook under one game state: what the `rules` asset produces."""

    model_config = ConfigDict(frozen=True)
    rulebook: Rulebook
    game_state: GameState
    active_rule_ids: tuple[str, ...]

    @classmethod
    def compile(cls, rulebook: Rulebook, game_state: GameState) -> CompiledRules:
        return cls(
            rulebook=rulebook,
            game_state=game_state,
            active_rule_ids=tuple(sorted(r.id for r in rulebook.active_rules(game_state.live_events))),
        )


# --- conditions ---------------------------------------------------------------------------


def evaluate_condition(condition: dict[str, Any], encounter: Encounter) -> bool:
    for key, expected in condition.items():
        if key == "any":
            if not any(evaluate_condition(sub, encounter) for sub in expected):
                return False
        elif key == "not":
            if evaluate_condition(expected, encounter):
                return False
        else:
            actual = encounter.lookup(key)
            ops = expected if isinstance(expected, dict) else {_shorthand_op(actual): expected}
            if not all(_apply(op, actual, value) for op, value in ops.items()):
                return False
    return True


def _shorthand_op(actual: Any) -> str:
    return "contains" if isinstance(actual, tuple) else "eq"


def _apply(op: str, actual: Any, value: Any) -> bool:
    match op:
        case "eq":
            return actual == value
        case "ne":
            return actual != value
        case "in":
            return actual in value
        case "not_in":
            return actual not in value
        case "gt":
            return actual > value
        case "gte":
            return actual >= value
        case "lt":
            return actual < value
        case "lte":
            return actual <= value
        case "contains":
            return value in actual
        case "contains_any":
            return any(v in actual for v in value)
        case "not_contains":
            return value not in actual
    raise ValueError(f"unknown operator {op}")


def _field_options(annotation: Any) -> tuple[Any, ...] | None:
    """Allowed values of a Literal field (or of the items of a tuple of Literals)."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def validate_condition(condition: Any, where: str, source: Path) -> None:
    """Raise InputError for unknown paths, operators or values in a rule condition."""
    if not isinstance(condition, dict):
        raise InputError(source, where, f"condition must be a mapping, got {type(condition).__name__}")
    paths = encounter_field_paths()
    for key, expected in condition.items():
        field = f"{where}.{key}"
        if key == "any":
            if not isinstance(expected, list) or not expected:
                raise InputError(source, field, "'any' takes a non-empty list of conditions")
            for i, sub in enumerate(expected):
                validate_condition(sub, f"{field}[{i}]", source)
            continue
        if key == "not":
            validate_condition(expected, field, source)
            continue
        if key not in paths:
            raise InputError(source, field, f"unknown encounter field {key!r} (known: {', '.join(sorted(paths))})")
        annotation = paths[key]
        is_list = typing.get_origin(annotation) is tuple
        is_number = annotation in (int, float)
        ops = expected if isinstance(expected, dict) else {"contains" if is_list else "eq": expected}
        for op, value in ops.items():
            if op not in ALL_OPS:
                raise InputError(source, f"{field}.{op}", f"unknown operator (known: {', '.join(sorted(ALL_OPS))})")
            if op in COMPARE_OPS and (not is_number or not isinstance(value, (int, float))):
                raise InputError(source, f"{field}.{op}", "ordering operators need a numeric field and value")
            if op in LIST_OPS and not is_list:
                raise InputError(source, f"{field}.{op}", f"{op} needs a list field such as player.items")
            if op in MEMBER_OPS | {"contains_any"} and not isinstance(value, list):
                raise InputError(source, f"{field}.{op}", f"{op} takes a list of values")
            options = _field_options(annotation)
            if options is not None:
                for v in value if isinstance(value, list) else [value]:
                    if v not in options:
                        raise InputError(source, f"{field}.{op}", f"{v!r} is not one of {', '.join(map(str, options))}")


# --- loading --------------------------------------------------------------------------------


def _read_rule_file(path: Path) -> RuleFile:
    try:
        raw = load_yaml(read_source_file(path))
    except yaml.YAMLError as exc:
        raise InputError(path, "yaml", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(path, "document", "a rule file must be a mapping with 'rules'")
    rules = raw.get("rules") if isinstance(raw.get("rules"), list) else []

    def by_rule_id(loc: tuple) -> str | None:  # "rules[vampire.dawn_shelter].priority", not "rules.3.priority"
        if loc[:1] == ("rules",) and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(rules):
            if isinstance(rules[loc[1]], dict):
                return f"rules[{rules[loc[1]].get('id', loc[1])}]" + "".join(f".{p}" for p in loc[2:])
        return None

    try:
        return RuleFile.model_validate(raw)
    except ValidationError as exc:
        raise_all(validation_errors(path, exc, by_rule_id))
        raise  # unreachable: a ValidationError has at least one error


def rules_source_version(rules_root: Path, species: str, max_bytes: int) -> str:
    """The version of what `load_rulebook` reads for a species: `global.yaml` and `<species>.yaml` as on disk."""
    return files_version(
        [("global.yaml", rules_root / "global.yaml"), (f"{species}.yaml", rules_root / f"{species}.yaml")], max_bytes
    )


def load_rulebook(rules_root: Path, species: str, lore_document_ids: typing.Iterable[str] | None = None) -> Rulebook:
    """Load and validate `global.yaml` plus `<species>.yaml`.

    `lore_document_ids`, when given, is the set of lore documents a rule's `source` may cite.
    """
    validate_species_id(species)
    global_path = rules_root / "global.yaml"
    species_path = rules_root / f"{species}.yaml"
    for path in (global_path, species_path):
        if not path.is_file():
            raise InputError(path, "file", f"rule file missing for species {species!r}")
    problems: list[InputError] = []  # every problem of both files, reported together

    def read(path: Path) -> RuleFile | None:
        try:
            return _read_rule_file(path)
        except InputError as exc:
            problems.extend(exc.errors if isinstance(exc, InputErrors) else [exc])
            return None

    shared, own = read(global_path), read(species_path)
    if shared is None or own is None:
        raise_all(problems)
    if own.species != species:
        problems.append(InputError(species_path, "species", f"expected {species!r}, found {own.species!r}"))
    vocabulary = tuple(dict.fromkeys(shared.actions + own.actions))
    known_events = shared.events
    for label, verdict in own.outcomes.items():
        if shared.outcomes.get(label, verdict) != verdict:
            problems.append(
                InputError(
                    species_path,
                    f"outcomes.{label}",
                    f"{verdict!r} contradicts global.yaml's {shared.outcomes[label]!r} for the same label",
                )
            )
    seen: dict[str, Path] = {}
    for path, rule_file in ((global_path, shared), (species_path, own)):
        for rule in rule_file.rules:
            field = f"rules[{rule.id}]"

            def problem(where: str, message: str, path: Path = path, field: str = field) -> None:
                problems.append(InputError(path, f"{field}{where}", message))

            if rule.id in seen:
                problem(".id", f"duplicate rule id (also in {seen[rule.id]})")
            seen[rule.id] = path
            if finding := screen(rule.description):
                problem(
                    ".description",
                    f"reads as instructions to a model ({finding}): "
                    "rule texts reach the teachers' prompts; describe the rule instead",
                )
            for effect in ("forbid", "require", "prefer"):
                for action in getattr(rule, effect):
                    if action not in vocabulary:
                        problem(f".{effect}", f"unknown action {action!r} for {species}")
            for gate in ("only_during", "not_during"):
                for event in getattr(rule.events, gate):
                    if event not in known_events:
                        problem(f".events.{gate}", f"unknown live event {event!r}")
            if lore_document_ids is not None and rule.source not in set(lore_document_ids):
                problem(".source", f"cites unknown lore document {rule.source!r}")
            try:
                validate_condition(rule.when, f"{field}.when", path)
            except InputError as exc:
                problems.append(exc)
    raise_all(problems)
    return Rulebook(
        species=species,
        actions=vocabulary,
        shared_actions=shared.actions,
        known_events=known_events,
        rules=tuple(shared.rules + own.rules),
        outcomes={**shared.outcomes, **own.outcomes},
    )
