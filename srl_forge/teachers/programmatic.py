"""The programmatic expert: every role played offline from the rules engine, the dossier and the
species' phrasebook. Deterministic for a seed; the embedded default teacher."""

from __future__ import annotations

import random
import re

from srl_forge.encounter import Encounter, GameState
from srl_forge.encounters import EncounterDesigner, EncounterSet
from srl_forge.hashing import content_hash
from srl_forge.lore import CitedEntry, Dossier, SpeciesLore
from srl_forge.rulebook import Rulebook
from srl_forge.teachers.phrasebook import foe_name
from srl_forge.teachers.roles import Brief, Review
from srl_forge.trajectory import Trajectory, TrajectoryStep, assess_text

DECISIVE = ("require", "forbid", "prefer")
WORD = re.compile(r"[a-z]+")


class ProgrammaticLoremaster:
    def consolidate(self, lore: SpeciesLore) -> Dossier:
        return lore.dossier


class ProgrammaticDesigner:
    def __init__(self, seed: int = 0):
        self.seed = seed

    def design(self, rulebook: Rulebook, live_state: GameState, min_per_rule: int, random_encounters: int,
               validation_fraction: float, test_fraction: float, mined: list[Encounter],
               min_test_encounters: int = 0) -> EncounterSet:
        return EncounterDesigner(rulebook, live_state, seed=self.seed).design(
            min_per_rule=min_per_rule, random_encounters=random_encounters,
            validation_fraction=validation_fraction, test_fraction=test_fraction, mined=mined,
            min_test_encounters=min_test_encounters)


def _overlap(a: str, b: str) -> int:
    return len(set(WORD.findall(a.lower())) & set(WORD.findall(b.lower())))


def lore_for_rule(dossier: Dossier, source: str, description: str) -> CitedEntry | None:
    """The dossier entry from the rule's source document that best matches the rule."""
    entries = [entry for _, entry in dossier.entries() if entry.source == source]
    if not entries:
        return None
    return max(entries, key=lambda e: (_overlap(e.text, description), -entries.index(e)))


class ProgrammaticWriter:
    """Writes a trajectory from the decision trace: assess, recall lore, apply rules, decide, speak."""

    name = "programmatic"

    def __init__(self, phrasebook: dict[str, tuple[str, ...]], seed: int = 0, max_rules: int = 3):
        self.phrasebook = phrasebook
        self.seed = seed
        self.max_rules = max_rules

    def write(self, encounter: Encounter, brief: Brief, variant: int = 0) -> Trajectory:
        rng = random.Random(content_hash([self.seed, variant, encounter.encounter_id]))
        decision = brief.decision
        steps = [TrajectoryStep(
            title="ASSESS",
            thought="Before anything, I take in the night around me and the mortal before me.",
            action=assess_text(encounter),
        )]
        decisive = []
        for entry in sorted(decision.trace, key=lambda e: -e.priority):
            if entry.status == "applied" and entry.effect.split(" ")[0] in DECISIVE \
                    and entry.rule_id not in [d.rule_id for d in decisive]:
                decisive.append(entry)
        decisive = decisive[: self.max_rules]
        citations: list[str] = []
        for entry in decisive:
            lore = lore_for_rule(brief.dossier, entry.source, brief.rule_descriptions.get(entry.rule_id, ""))
            if lore is None or lore.source in citations:
                continue
            citations.append(lore.source)
            steps.append(TrajectoryStep(
                title="RECALL LORE",
                thought=rng.choice(["What does the lore of my kind say here?", "I remember what I am."]),
                action=f"{lore.source}: {lore.text}",
            ))
        for entry in decisive:
            steps.append(TrajectoryStep(
                title="APPLY RULE",
                thought=f"{brief.rule_descriptions.get(entry.rule_id, entry.rule_id)}",
                action=f"{entry.rule_id} (priority {entry.priority}): {entry.effect}.",
            ))
        if not decisive:
            steps.append(TrajectoryStep(title="APPLY RULE", thought="Nothing binds me here.",
                                        action="No rule binds me here; I act on instinct."))
        if decision.recommended:
            action, why = decision.recommended, "it ranks first among the acceptable actions"
        elif decision.tied:
            action, why = rng.choice(sorted(decision.tied)), f"it is as good as {', '.join(decision.tied)}"
        elif decision.acceptable:
            action, why = decision.acceptable[0], "it is acceptable"
        else:
            action, why = "observe", "the rules contradict each other, so I hold still"
        steps.append(TrajectoryStep(
            title="DECIDE",
            thought=f"Acceptable: {', '.join(decision.acceptable) or 'none'}. I choose {action} because {why}.",
            action=f"ACTION: {action}",
        ))
        steps.append(TrajectoryStep(
            title="SPEAK",
            thought="I answer in the voice of my kind.",
            action=f'SAY: "{self._line(action, encounter, brief, rng)}"',
        ))
        return Trajectory(
            encounter_id=encounter.encounter_id, species=encounter.species, steps=tuple(steps),
            citations=tuple(citations), rule_ids=tuple(e.rule_id for e in decisive), teacher=self.name,
        )

    def _line(self, action: str, encounter: Encounter, brief: Brief, rng: random.Random) -> str:
        options = [line.format(foe=foe_name(encounter.player.faction)) for line in self.phrasebook.get(action, ())]
        rng.shuffle(options)
        for line in options:
            if not brief.decision.dialogue.check(line):
                return line
        return options[0] if options else "..."


class LoreReviewer:
    """Lore-faithful: every RECALL LORE step quotes an entry of the dossier, citing its document."""

    aspect = "lore"

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
                e.status == "applied" for e in brief.decision.trace):
            issues.append("no lore recalled although rules apply")
        return Review(aspect="lore", approved=not issues, issues=issues)


class CharacterReviewer:
    """In character: the spoken line meets the species' dialogue constraints."""

    aspect = "character"

    def review(self, trajectory: Trajectory, encounter: Encounter, brief: Brief) -> Review:
        line = trajectory.spoken_line
        if line is None:
            return Review(aspect="character", approved=False, issues=["no spoken line"])
        issues = [reason for _, reason in brief.decision.dialogue.check(line)]
        return Review(aspect="character", approved=not issues, issues=issues)


class RulesReviewer:
    """Rule-correct: the decision is acceptable and the rules applied are rules that fired."""

    aspect = "rules"

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

    def direct(self, encounter: Encounter, brief: Brief, proposals: list[Trajectory],
               reviews: list[list[Review]]) -> Trajectory:
        scores = [sum(len(r.issues) + (0 if r.approved else 1) for r in rs) for rs in reviews]
        best = min(range(len(proposals)), key=lambda i: (scores[i], i))
        chosen = proposals[best]
        return chosen.model_copy(update={"teacher": f"{chosen.teacher}+director"})
