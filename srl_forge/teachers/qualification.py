"""Qualification ("each meeting minimum levels"): a panel member's proposals and votes count only once it has met
a minimum level on a seeded calibration set that the rules engine can grade.

- **Writers** write one trajectory per calibration encounter. Their score is *decision agreement* with the
  engine: the share of trajectories whose action is the engine's top choice. A calibration set holds no top
  action more than a third of the time, so a lazy model that always gives one action cannot pass.
- **Reviewers** judge, per calibration encounter, the reference expert's trajectory (good) and copies of it with
  one planted fault each, for the aspects the reviewer judges: a forbidden action (rules), a line in a broken
  voice (character) and an invented lore fact (lore). Their score is *balanced accuracy*: the mean of the share of
  faults rejected and the share of good trajectories approved. Approving everything, or rejecting everything,
  scores 0.5.

The calibration calls are the members' production calls (the same prompts, made through the same cached clients),
so a model cannot tell a test from work, and a second run makes no calls.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field

from srl_forge.encounter import Encounter, GameState
from srl_forge.encounters import EncounterDesigner
from srl_forge.errors import InputError
from srl_forge.grading import top_actions
from srl_forge.lore import Dossier
from srl_forge.policy import decide_action, speak_action
from srl_forge.rules_engine import Decision, RulesEngine
from srl_forge.teachers.collaboration import TeacherTeam, build_brief
from srl_forge.teachers.openai_compatible import TeacherUnavailable
from srl_forge.teachers.roles import Brief, QualificationScore, ReviewAspect, Reviewer, TrajectoryWriter
from srl_forge.trajectory import Trajectory, TrajectoryStep


class QualificationConfig(BaseModel):
    """The calibration set's size and seed, and the minimum level of each role (`qualification:` in the teachers
    file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = True
    encounters: int = Field(default=6, ge=3, le=60)
    seed: int = 7
    min_writer_agreement: float = Field(default=0.7, ge=0, le=1)
    min_reviewer_accuracy: float = Field(default=0.75, ge=0, le=1)


class NoQualifiedTeacher(RuntimeError):
    """A role has no member left that met its level: the step cannot write trustworthy trajectories."""

    def __init__(self, what: str, scores: Sequence[QualificationScore]):
        listed = ", ".join(f"{s.name} {s.score:.2f} ({s.detail})" for s in scores) or "none configured"
        super().__init__(f"{what}: {listed}")


# Planted faults, each one aspect's: a reviewer judging that aspect must reject the copy that carries it.
BROKEN_LINE = "lol okay dude, whatever, hey."  # modern slang: breaks every species' voice
INVENTED_FACT = "My kind walks unharmed by day and fears no blade, no fire and no holy thing."
FAULT_ASPECTS: dict[str, ReviewAspect] = {
    "forbidden_action": "rules",
    "broken_voice": "character",
    "invented_lore": "lore",
}


def calibration_encounters(engine: RulesEngine, count: int, seed: int, max_attempts: int = 2000) -> list[Encounter]:
    """`count` encounters, seeded, that grade well: one top action (no tie, no conflict), at least one forbidden
    action (so a forbidden one can be planted), a voice to break, and no top action more than a third of the
    time."""
    rules = engine.rulebook.rules
    designer = EncounterDesigner(engine.rulebook, GameState(), seed=seed)
    per_action = max(1, -(-count // 3))
    picked: dict[str, Encounter] = {}
    tops: Counter[str] = Counter()
    for attempt in range(max_attempts):
        encounter = designer.targeted(rules[attempt % len(rules)]) if attempt % 2 == 0 else designer.random()
        if encounter is None or encounter.encounter_id in picked:
            continue
        decision = engine.decide(encounter)
        top = top_actions(decision)
        if decision.conflicts or len(top) != 1 or not decision.forbidden or not decision.dialogue.check(BROKEN_LINE):
            continue
        if tops[top[0]] >= per_action:
            continue
        picked[encounter.encounter_id] = encounter
        tops[top[0]] += 1
        if len(picked) == count:
            return list(picked.values())
    # a configuration the species' rules cannot serve: named as the teachers file's field, a Failure in the UI
    raise InputError(
        "teachers config",
        "qualification.encounters",
        f"{engine.rulebook.species}: found {len(picked)} of {count} calibration encounters in {max_attempts} "
        f"tries (one top action, a forbidden one, no action top more than {per_action} times): lower it, "
        "or add rules that forbid",
    )


def _replace_step(trajectory: Trajectory, title: str, step: TrajectoryStep) -> Trajectory:
    steps = list(trajectory.steps)
    where = next((i for i, s in enumerate(steps) if s.title == title), None)
    if where is None:  # no such step: put it after ASSESS
        steps.insert(1, step)
    else:
        steps[where] = step
    return trajectory.model_copy(update={"steps": tuple(steps)})


def planted_faults(good: Trajectory, decision: Decision, dossier: Dossier) -> dict[str, Trajectory]:
    """Copies of a good trajectory with one fault each, by kind (see FAULT_ASPECTS)."""
    forbidden = sorted(decision.forbidden)[0]
    source = good.citations[0] if good.citations else next(e.source for _, e in dossier.entries())
    return {
        "forbidden_action": _replace_step(
            good,
            "DECIDE",
            TrajectoryStep(title="DECIDE", thought=f"I choose {forbidden}.", action=decide_action(forbidden)),
        ),
        "broken_voice": _replace_step(
            good, "SPEAK", TrajectoryStep(title="SPEAK", thought="I say it plainly.", action=speak_action(BROKEN_LINE))
        ),
        "invented_lore": _replace_step(
            good,
            "RECALL LORE",
            TrajectoryStep(title="RECALL LORE", thought="I recall what I know.", action=f"{source}: {INVENTED_FACT}"),
        ),
    }


@dataclasses.dataclass(frozen=True)
class Qualified:
    team: TeacherTeam  # only the members that met their level
    scores: list[QualificationScore]

    @property
    def left_out(self) -> list[QualificationScore]:
        return [s for s in self.scores if not s.qualified]


def qualify(
    team: TeacherTeam,
    engine: RulesEngine,
    dossier: Dossier,
    reference: TrajectoryWriter,
    config: QualificationConfig,
    aspects: Sequence[ReviewAspect] = tuple(FAULT_ASPECTS.values()),
) -> Qualified:
    """Score every writer and reviewer of `team` on the calibration set and keep those that meet their level.
    `reference` writes the good trajectories the faults are planted in (the programmatic expert). Raises
    `NoQualifiedTeacher` when no writer qualifies or an aspect loses every reviewer; `TeacherUnavailable` when an
    endpoint stays down (the step is retried, the finished calls are cached)."""
    if not config.enabled:
        return Qualified(team=team, scores=[])
    encounters = calibration_encounters(engine, config.encounters, config.seed)
    briefs = [build_brief(e, engine, dossier) for e in encounters]
    goods = [reference.write(e, b, 0) for e, b in zip(encounters, briefs)]
    cases = [
        (encounter, brief, good, planted_faults(good, brief.decision, dossier))
        for encounter, brief, good in zip(encounters, briefs, goods)
    ]

    reviewers: dict[str, list[Reviewer]] = defaultdict(list)
    for reviewer in team.reviewers:
        reviewers[reviewer.name].append(reviewer)

    def writer_score(writer: TrajectoryWriter) -> QualificationScore:
        agreed = 0
        for encounter, brief in zip(encounters, briefs):
            try:
                action = writer.write(encounter, brief, 0).final_action
            except TeacherUnavailable:
                raise
            except Exception:  # an answer that never parsed agrees with nothing
                action = None
            agreed += action == top_actions(brief.decision)[0]
        score = agreed / len(encounters)
        return QualificationScore(
            name=writer.name,
            role="writer",
            score=score,
            level=config.min_writer_agreement,
            qualified=score >= config.min_writer_agreement,
            detail=f"{agreed}/{len(encounters)} decisions agree with the rules engine",
        )

    def reviewer_score(name: str) -> QualificationScore:
        members = reviewers[name]
        judged = {r.aspect for r in members}

        def approves(trajectory: Trajectory, encounter: Encounter, brief: Brief) -> bool:
            try:
                return all(r.review(trajectory, encounter, brief).approved for r in members)
            except TeacherUnavailable:
                raise
            except Exception:  # no verdict is a missed fault, and a good trajectory not approved
                return False

        good_approved = caught = planted = 0
        for encounter, brief, good, faults in cases:
            good_approved += approves(good, encounter, brief)
            for kind, faulty in faults.items():
                if FAULT_ASPECTS[kind] in judged:
                    planted += 1
                    caught += not approves(faulty, encounter, brief)
        score = (caught / planted + good_approved / len(cases)) / 2
        return QualificationScore(
            name=name,
            role="reviewer",
            score=score,
            level=config.min_reviewer_accuracy,
            qualified=score >= config.min_reviewer_accuracy,
            detail=f"caught {caught}/{planted} planted faults, approved {good_approved}/{len(cases)} good trajectories",
        )

    jobs: list[Callable[[], QualificationScore]] = [lambda w=w: writer_score(w) for w in team.writers]
    jobs += [lambda n=n: reviewer_score(n) for n in reviewers]
    with ThreadPoolExecutor(max_workers=max(1, team.concurrency)) as pool:
        scores = list(pool.map(lambda job: job(), jobs))

    passed = {(s.role, s.name) for s in scores if s.qualified}
    writers = [w for w in team.writers if ("writer", w.name) in passed]
    if not writers:
        raise NoQualifiedTeacher(
            f"no writer meets the minimum level ({config.min_writer_agreement:.2f} decision agreement with the rules "
            "engine on the calibration set)",
            [s for s in scores if s.role == "writer"],
        )
    kept = [r for r in team.reviewers if ("reviewer", r.name) in passed]
    uncovered = [
        a for a in aspects if any(r.aspect == a for r in team.reviewers) and not any(r.aspect == a for r in kept)
    ]
    if uncovered:
        raise NoQualifiedTeacher(
            f"no qualified reviewer judges {', '.join(uncovered)} (minimum level {config.min_reviewer_accuracy:.2f} "
            "balanced accuracy on planted faults)",
            [s for s in scores if s.role == "reviewer"],
        )
    return Qualified(team=dataclasses.replace(team, writers=writers, reviewers=kept), scores=scores)
