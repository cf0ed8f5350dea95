"""The programmatic expert: every role played offline from the rules engine, the dossier, the
semantic memory's recalls and the species' voice. Deterministic for a seed; the embedded default
teacher."""

from __future__ import annotations

import random
import re

from srl_forge.encounter import Encounter, GameState
from srl_forge.encounters import DesignSpec, EncounterDesigner, EncounterSet
from srl_forge.hashing import content_hash
from srl_forge.lore import CitedEntry, Dossier, SpeciesLore
from srl_forge.policy import assess_text, decide_action, speak_action
from srl_forge.rulebook import Rulebook
from srl_forge.rules_engine import Decision
from srl_forge.teachers.lines import Voice, compose_line
from srl_forge.teachers.roles import Brief, Review
from srl_forge.trajectory import Trajectory, TrajectoryStep

DECISIVE = ("require", "forbid", "prefer")
WORD = re.compile(r"[a-z]+")


class ProgrammaticLoremaster:
    def consolidate(self, lore: SpeciesLore) -> Dossier:
        return lore.dossier


class ProgrammaticDesigner:
    def __init__(self, seed: int = 0):
        self.seed = seed

    def design(
        self,
        rulebook: Rulebook,
        live_state: GameState,
        spec: DesignSpec,
        mined: list[Encounter],
        went_wrong: frozenset[str] = frozenset(),
    ) -> EncounterSet:
        return EncounterDesigner(rulebook, live_state, seed=self.seed).design(spec, mined=mined, went_wrong=went_wrong)


def _overlap(a: str, b: str) -> int:
    return len(set(WORD.findall(a.lower())) & set(WORD.findall(b.lower())))


def lore_for_rule(dossier: Dossier, source: str, description: str) -> CitedEntry | None:
    """The dossier entry from the rule's source document that best matches the rule."""
    entries = [entry for _, entry in dossier.entries() if entry.source == source]
    if not entries:
        return None
    return max(entries, key=lambda e: (_overlap(e.text, description), -entries.index(e)))


def recall_query(encounter: Encounter, decision: Decision, descriptions: dict[str, str]) -> str:
    """What the monster asks its memory: the situation and the rules that fired, in words."""
    rules = " ".join(
        descriptions.get(e.rule_id, "")
        for e in sorted(decision.trace, key=lambda e: -e.priority)
        if e.effect.split(" ")[0] in DECISIVE
    )
    return f"{assess_text(encounter)} {rules}".strip()


def decisive_entries(decision: Decision, max_rules: int = 3) -> list:
    """The rules that decide, highest priority first: applied or overridden requirements, bans and preferences."""
    decisive = []
    for entry in sorted(decision.trace, key=lambda e: -e.priority):
        if (
            entry.status in ("applied", "overridden")
            and entry.effect.split(" ")[0] in DECISIVE
            and entry.rule_id not in [d.rule_id for d in decisive]
        ):
            decisive.append(entry)
    return decisive[:max_rules]


NO_RULE = "No rule binds me here; I act on instinct."


def rule_step_action(entry) -> str:
    """An APPLY RULE step's action: `id (priority p): effect.` (and the status when it did not apply)."""
    return (
        f"{entry.rule_id} (priority {entry.priority}): {entry.effect}"
        + (f" [{entry.status}]" if entry.status != "applied" else "")
        + "."
    )


def applied_rules_text(decision: Decision, max_rules: int = 3) -> str:
    """The APPLY RULE steps' actions of an expert trajectory, joined: the thought of the policy's answer."""
    return " ".join(rule_step_action(e) for e in decisive_entries(decision, max_rules)) or NO_RULE


def _short(text: str, words: int = 14) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + ("..." if len(parts) > words else "")


class ProgrammaticWriter:
    """Writes a trajectory from the decision trace and the recalled lore: assess, recall lore, apply
    rules, decide (explaining why the winner beats the runner-up), speak (a line composed from the
    encounter, see `lines.py`)."""

    def __init__(
        self, voice: Voice, seed: int = 0, max_rules: int = 3, max_recalls: int = 2, name: str = "programmatic"
    ):
        self.name = name  # a panel member's own name, where it has one
        self.voice = voice
        self.seed = seed
        self.max_rules = max_rules
        self.max_recalls = max_recalls

    def write(self, encounter: Encounter, brief: Brief, variant: int = 0) -> Trajectory:
        rng = random.Random(content_hash([self.seed, variant, encounter.encounter_id]))
        decision = brief.decision
        p, loc = encounter.player, encounter.location
        decisive = decisive_entries(decision, self.max_rules)
        pressing = [brief.rule_descriptions.get(e.rule_id, e.rule_id).rstrip(".").lower() for e in decisive[:2]]
        steps = [
            TrajectoryStep(
                title="ASSESS",
                thought=(
                    f"{p.party_size} {p.faction} {p.action} at the {loc.kind}"
                    + (f" with {', '.join(i.replace('_', ' ') for i in p.items)}" if p.items else "")
                    + (f"; what matters: {'; '.join(pressing)}." if pressing else "; nothing presses me.")
                ),
                action=assess_text(encounter),
            )
        ]
        # Lore: what semantic memory recalled for this encounter first, then the rules' own sources.
        recalled: list[CitedEntry] = list(brief.recalled)
        for entry in decisive:
            lore = lore_for_rule(brief.dossier, entry.source, brief.rule_descriptions.get(entry.rule_id, ""))
            if lore is not None:
                recalled.append(lore)
        citations: list[str] = []
        quoted: list[CitedEntry] = []
        for lore in recalled:
            if lore.source in citations or len(quoted) >= self.max_recalls:
                continue
            citations.append(lore.source)
            quoted.append(lore)
            from_memory = lore in brief.recalled
            steps.append(
                TrajectoryStep(
                    title="RECALL LORE",
                    thought=(
                        f"My memory of {lore.source} answers this {loc.kind} encounter."
                        if from_memory
                        else f"The rule I face comes from {lore.source}; I recall what it says."
                    ),
                    action=f"{lore.source}: {lore.text}",
                )
            )
        for entry in decisive:
            steps.append(
                TrajectoryStep(
                    title="APPLY RULE",
                    thought=(
                        f"{brief.rule_descriptions.get(entry.rule_id, entry.rule_id)}"
                        + (f" It is {entry.status}: {entry.note}." if entry.status != "applied" and entry.note else "")
                    ),
                    action=rule_step_action(entry),
                )
            )
        if not decisive:
            steps.append(TrajectoryStep(title="APPLY RULE", thought="Nothing binds me here.", action=NO_RULE))
        action, why = self._choose(decision, brief, rng)
        # Short on purpose: the whole step (thought included) must fit the policy's completion budget.
        lore_note = f" Lore: {quoted[0].source}, {_short(quoted[0].text, 8)}" if quoted else ""
        steps.append(
            TrajectoryStep(
                title="DECIDE",
                thought=f"I choose {action}: {why}.{lore_note}",
                action=decide_action(action),
            )
        )
        markers = decision.dialogue.voice_markers()
        line = compose_line(self.voice, encounter, action, decision.dialogue, rng, markers)
        steps.append(
            TrajectoryStep(
                title="SPEAK",
                thought=f"I answer what is in front of me, the {p.faction} and the {loc.kind}, "
                "in the voice of my kind.",
                action=speak_action(line),
            )
        )
        return Trajectory(
            encounter_id=encounter.encounter_id,
            species=encounter.species,
            steps=tuple(steps),
            citations=tuple(citations),
            rule_ids=tuple(e.rule_id for e in decisive),
            teacher=self.name,
        )

    def _choose(self, decision: Decision, brief: Brief, rng: random.Random) -> tuple[str, str]:
        """The engine's top action and why it beats the runner-up, from the rules that ranked them."""

        def backer(action: str) -> str:
            for entry in sorted(decision.trace, key=lambda e: -e.priority):
                if entry.status == "applied" and action in entry.effect and not entry.effect.startswith("forbid"):
                    return f"{entry.rule_id} (priority {entry.priority})"
            return "no rule against it"

        if decision.recommended:
            action = decision.recommended
        elif decision.tied:
            action = rng.choice(sorted(decision.tied))
        elif decision.acceptable:
            action = decision.acceptable[0]
        else:
            return "observe", "the rules contradict each other, so I hold still"
        why = f"{backer(action)} puts it first"
        runner_up = next((a for a in decision.acceptable if a != action and a not in decision.tied), None)
        if runner_up:
            why += f"; {runner_up} comes second ({backer(runner_up)})"
        forbidden = sorted(decision.forbidden)
        if forbidden:
            why += f"; {', '.join(forbidden)} forbidden"
        return action, why


class LoreReviewer:
    """Lore-faithful: every RECALL LORE step quotes an entry of the dossier, citing its document."""

    aspect = "lore"

    def __init__(self, name: str = "programmatic"):
        self.name = name

    def review(self, trajectory: Trajectory, encounter: Encounter, brief: Brief) -> Review:
        known = {(e.source, e.text) for _, e in brief.dossier.entries()}
        issues = []
        for step in trajectory.steps:
            if step.title != "RECALL LORE":
                continue
            source, _, text = step.action.partition(": ")
            if (source, text) not in known:
                issues.append(f"lore not found in the dossier: {step.action[:80]}")
        if not any(s.title == "RECALL LORE" for s in trajectory.steps) and any(
            e.status == "applied" for e in brief.decision.trace
        ):
            issues.append("no lore recalled although rules apply")
        return Review(aspect="lore", approved=not issues, issues=issues)


class CharacterReviewer:
    """In character: the spoken line meets the species' dialogue constraints."""

    aspect = "character"

    def __init__(self, name: str = "programmatic"):
        self.name = name

    def review(self, trajectory: Trajectory, encounter: Encounter, brief: Brief) -> Review:
        line = trajectory.spoken_line
        if line is None:
            return Review(aspect="character", approved=False, issues=["no spoken line"])
        issues = [reason for _, reason in brief.decision.dialogue.check(line)]
        return Review(aspect="character", approved=not issues, issues=issues)


class RulesReviewer:
    """Rule-correct: the decision is acceptable and the rules applied are rules that fired."""

    aspect = "rules"

    def __init__(self, name: str = "programmatic"):
        self.name = name

    def review(self, trajectory: Trajectory, encounter: Encounter, brief: Brief) -> Review:
        issues = list(trajectory.structural_problems())
        action = trajectory.final_action
        if action is not None and action not in brief.decision.acceptable:
            issues.append(f"{action} is not acceptable here ({brief.decision.reason_for(action)})")
        fired = set(brief.decision.fired_rule_ids)
        issues += [f"applies rule {r} which did not fire" for r in trajectory.rule_ids if r not in fired]
        return Review(aspect="rules", approved=not issues, issues=issues)


class ProgrammaticDirector:
    """Keeps the proposal the reviewers like best (fewest issues, earliest on ties)."""

    def direct(
        self, encounter: Encounter, brief: Brief, proposals: list[Trajectory], reviews: list[list[Review]]
    ) -> Trajectory:
        scores = [sum(len(r.issues) + (0 if r.approved else 1) for r in rs) for rs in reviews]
        best = min(range(len(proposals)), key=lambda i: (scores[i], i))
        chosen = proposals[best]
        return chosen.model_copy(update={"teacher": f"{chosen.teacher}+director"})
