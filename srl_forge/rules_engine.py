"""The dynamic rules engine: `decide` what a monster may do, `verify` what it did.

Deterministic, pure Python. Resolution, in order:
1. Rules that are on (live events) and whose condition holds *fire*.
2. Requirements: the highest-priority requiring rules win; lower ones are overridden. Requiring
   rules at the same top priority must agree on at least one action, else it is a conflict.
3. A forbidden action that is also required: the higher priority wins; equal priority is a
   conflict. Conflicts are reported, never guessed: the decision then accepts no action.
4. Acceptable = the surviving required actions, or, with none, the vocabulary less the
   forbidden actions. They are ranked by the highest priority of a rule preferring them (within
   one rule, earlier in its `prefer` list first); `recommended` is the single top-ranked one
   (None when the top is tied across rules: see `tied`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from srl_forge.encounter import Encounter
from srl_forge.rulebook import Rule, Rulebook

Status = Literal["applied", "overridden", "ignored"]


class TraceEntry(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule_id: str
    source: str
    priority: int
    effect: str
    status: Status
    note: str = ""


class Conflict(BaseModel):
    model_config = ConfigDict(frozen=True)
    action: str | None
    rule_ids: tuple[str, ...]
    priority: int
    reason: str


class VoiceMarkers(BaseModel):
    """A rule's voice: the line must carry one of `markers`."""

    model_config = ConfigDict(frozen=True)
    rule_id: str
    markers: tuple[str, ...]


class BannedWord(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule_id: str
    word: str


class WordLimit(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule_id: str
    limit: int


class DialogueConstraints(BaseModel):
    model_config = ConfigDict(frozen=True)
    markers_any: tuple[VoiceMarkers, ...] = ()  # each must be met
    banned_words: tuple[BannedWord, ...] = ()
    max_words: WordLimit | None = None  # the tightest

    def voice_markers(self) -> tuple[str, ...]:
        """Every marker of every voice rule (the species' own words, which are not grounding)."""
        return tuple(m for voice in self.markers_any for m in voice.markers)

    def describe(self) -> str:
        """The constraints in words, for a teacher's prompt (empty when there are none): an LLM writer or reviewer
        cannot keep, or check, a constraint it is not told."""
        parts = [f"use one of {', '.join(repr(m) for m in v.markers)} ({v.rule_id})" for v in self.markers_any]
        if self.banned_words:
            parts.append(f"never the words {', '.join(repr(b.word) for b in self.banned_words)}")
        if self.max_words is not None:
            parts.append(f"at most {self.max_words.limit} words ({self.max_words.rule_id})")
        return f"The spoken line must: {'; '.join(parts)}." if parts else ""

    def check(self, line: str) -> list[tuple[str, str]]:
        """(rule id, reason) for every constraint the spoken line breaks."""
        problems: list[tuple[str, str]] = []
        lowered = line.lower()
        words = re.findall(r"[a-z']+", lowered)
        for voice in self.markers_any:
            if not any(marker.lower() in lowered for marker in voice.markers):
                problems.append(
                    (voice.rule_id, f"dialogue lacks the species' voice (one of: {', '.join(voice.markers)})")
                )
        for banned in self.banned_words:
            if re.search(rf"\b{re.escape(banned.word.lower())}\b", lowered):
                problems.append((banned.rule_id, f"dialogue uses banned word {banned.word!r}"))
        if self.max_words is not None and len(words) > self.max_words.limit:
            problems.append(
                (self.max_words.rule_id, f"dialogue has {len(words)} words, at most {self.max_words.limit} allowed")
            )
        return problems


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)
    species: str
    acceptable: tuple[str, ...]  # best first
    recommended: str | None
    tied: tuple[str, ...] = ()  # equally top-ranked acceptable actions when no single best
    required: tuple[str, ...] = ()
    forbidden: dict[str, tuple[str, ...]] = {}  # action -> rule ids
    preference: dict[str, int] = {}  # action -> priority of the strongest rule preferring it
    dialogue: DialogueConstraints = DialogueConstraints()
    trace: tuple[TraceEntry, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def fired_rule_ids(self) -> list[str]:
        return [entry.rule_id for entry in self.trace]

    def reason_for(self, action: str) -> str:
        """Which rules make `action` acceptable or not, for humans and trajectories."""
        if action in self.forbidden:
            return f"forbidden by {', '.join(self.forbidden[action])}"
        applied = [e for e in self.trace if e.status == "applied" and action in e.effect]
        return "; ".join(f"{e.rule_id} ({e.effect})" for e in applied) or "no rule restricts it"


class Verification(BaseModel):
    model_config = ConfigDict(frozen=True)
    passed: bool
    reasons: tuple[tuple[str, str], ...] = ()  # (rule id or check name, reason)
    decision: Decision

    @property
    def rule_ids(self) -> list[str]:
        return [rule_id for rule_id, _ in self.reasons]


class RulesEngine:
    def __init__(self, rulebook: Rulebook):
        self.rulebook = rulebook
        self.vocabulary = rulebook.actions

    def fired(self, encounter: Encounter) -> list[Rule]:
        live = encounter.game.live_events
        return [rule for rule in self.rulebook.rules if rule.is_on(live) and rule.matches(encounter)]

    def decide(self, encounter: Encounter) -> Decision:
        if encounter.species != self.rulebook.species:
            raise ValueError(f"encounter is for {encounter.species!r}, rules are for {self.rulebook.species!r}")
        fired = self.fired(encounter)
        trace: list[TraceEntry] = []
        conflicts: list[Conflict] = []

        def log(rule: Rule, effect: str, status: Status, note: str = "") -> None:
            trace.append(
                TraceEntry(
                    rule_id=rule.id, source=rule.source, priority=rule.priority, effect=effect, status=status, note=note
                )
            )

        # 2. requirements: the top priority level wins.
        requiring = sorted((r for r in fired if r.require), key=lambda r: -r.priority)
        required: set[str] = set()
        require_priority = -1
        require_rules: list[Rule] = []
        if requiring:
            require_priority = requiring[0].priority
            require_rules = [r for r in requiring if r.priority == require_priority]
            required = set(require_rules[0].require)
            for rule in require_rules[1:]:
                required &= set(rule.require)
            if not required:
                conflicts.append(
                    Conflict(
                        action=None,
                        rule_ids=tuple(r.id for r in require_rules),
                        priority=require_priority,
                        reason="rules of equal priority require disjoint actions",
                    )
                )
            for rule in requiring:
                effect = f"require one of {', '.join(rule.require)}"
                if rule.priority == require_priority:
                    log(rule, effect, "applied")
                else:
                    log(rule, effect, "overridden", f"a priority-{require_priority} requirement wins")

        # 3. forbidden actions, against requirements.
        forbidden: dict[str, list[str]] = {}
        for rule in sorted((r for r in fired if r.forbid), key=lambda r: -r.priority):
            kept, overridden = [], []
            for action in rule.forbid:
                if action in required and require_priority > rule.priority:
                    overridden.append(action)
                    continue
                if action in required and require_priority == rule.priority:
                    conflicts.append(
                        Conflict(
                            action=action,
                            rule_ids=tuple(r.id for r in require_rules) + (rule.id,),
                            priority=rule.priority,
                            reason=f"{action} is both required and forbidden at equal priority",
                        )
                    )
                kept.append(action)
                forbidden.setdefault(action, []).append(rule.id)
            if kept:
                log(rule, f"forbid {', '.join(kept)}", "applied")
            if overridden:
                log(
                    rule,
                    f"forbid {', '.join(overridden)}",
                    "overridden",
                    f"a priority-{require_priority} requirement wins",
                )
        required -= set(forbidden)
        if require_rules and not required and not conflicts:
            conflicts.append(
                Conflict(
                    action=None,
                    rule_ids=tuple(r.id for r in require_rules),
                    priority=require_priority,
                    reason="every required action is forbidden by a higher-priority rule",
                )
            )

        # 4. acceptable actions, ranked by preference.
        if conflicts:
            acceptable: list[str] = []
        elif required:
            acceptable = [a for a in self.vocabulary if a in required]
        else:
            acceptable = [a for a in self.vocabulary if a not in forbidden]
        # rank = (priority of the strongest rule preferring it, earlier in that rule's list first)
        rank: dict[str, tuple[int, int]] = {}
        for rule in sorted((r for r in fired if r.prefer), key=lambda r: -r.priority):
            usable = [a for a in rule.prefer if a in acceptable]
            unusable = [a for a in rule.prefer if a not in acceptable]
            for position, action in enumerate(usable):
                rank[action] = max(rank.get(action, (-1, 0)), (rule.priority, -position))
            if usable:
                log(rule, f"prefer {', '.join(usable)}", "applied")
            if unusable:
                log(rule, f"prefer {', '.join(unusable)}", "ignored", "not acceptable here")
        preference = {a: r[0] for a, r in rank.items()}
        order = {a: i for i, a in enumerate(self.vocabulary)}
        unranked = (-1, 0)
        acceptable.sort(key=lambda a: (tuple(-x for x in rank.get(a, unranked)), order[a]))
        recommended, tied = None, ()
        if acceptable:
            top = rank.get(acceptable[0], unranked)
            best = tuple(a for a in acceptable if rank.get(a, unranked) == top)
            if len(best) == 1:
                recommended = best[0]
            else:
                tied = best

        # dialogue constraints from every fired rule.
        markers, banned, max_words = [], [], None
        for rule in fired:
            if rule.dialogue is None:
                continue
            d = rule.dialogue
            if d.markers_any:
                markers.append(VoiceMarkers(rule_id=rule.id, markers=d.markers_any))
            banned.extend(BannedWord(rule_id=rule.id, word=w) for w in d.banned_words)
            if d.max_words is not None and (max_words is None or d.max_words < max_words.limit):
                max_words = WordLimit(rule_id=rule.id, limit=d.max_words)
            log(rule, "dialogue constraints", "applied")

        return Decision(
            species=self.rulebook.species,
            acceptable=tuple(acceptable),
            recommended=recommended,
            tied=tied,
            required=tuple(a for a in self.vocabulary if a in required),
            forbidden={a: tuple(ids) for a, ids in forbidden.items()},
            preference=preference,
            dialogue=DialogueConstraints(markers_any=tuple(markers), banned_words=tuple(banned), max_words=max_words),
            trace=tuple(trace),
            conflicts=tuple(conflicts),
        )

    def verify(self, encounter: Encounter, action: str, dialogue: str | None = None) -> Verification:
        """Pass or fail, with every reason; the same check grades trajectories and policy outputs."""
        decision = self.decide(encounter)
        reasons: list[tuple[str, str]] = []
        if action not in self.vocabulary:
            reasons.append(("vocabulary", f"unknown action {action!r} for {self.rulebook.species}"))
        elif decision.conflicts:
            for conflict in decision.conflicts:
                reasons.append((",".join(conflict.rule_ids), f"unresolved rule conflict: {conflict.reason}"))
        elif action in decision.forbidden:
            for rule_id in decision.forbidden[action]:
                reasons.append((rule_id, f"{action} is forbidden: {self.rulebook.rule(rule_id).description}"))
        elif action not in decision.acceptable:
            for entry in decision.trace:
                if entry.status == "applied" and entry.effect.startswith("require"):
                    reasons.append((entry.rule_id, f"{action} ignores a requirement: {entry.effect}"))
        if dialogue is not None:
            reasons.extend(decision.dialogue.check(dialogue))
        return Verification(passed=not reasons, reasons=tuple(reasons), decision=decision)
