"""The collaboration: writers propose, reviewers check, the director consolidates, and the rules
engine verifies the result before it may become training data. Rejections are kept with reasons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from srl_forge.artifacts import StoredArtifact
from srl_forge.encounters import SampledEncounter
from srl_forge.guardrails import check as guardrail_violations
from srl_forge.lore import CitedEntry, Dossier
from srl_forge.policy import spoken_in
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.openai_compatible import TeacherUnavailable
from srl_forge.teachers.programmatic import recall_query
from srl_forge.teachers.roles import Brief, Director, QualificationScore, Review, Reviewer, TrajectoryWriter
from srl_forge.text_screen import screen
from srl_forge.trajectory import Trajectory


class AcceptedTrajectory(BaseModel):
    model_config = ConfigDict(frozen=True)
    encounter_id: str
    split: str
    trajectory: Trajectory
    reviews: list[Review]


class RejectedTrajectory(BaseModel):
    model_config = ConfigDict(frozen=True)
    encounter_id: str
    split: str
    teacher: str
    reasons: list[tuple[str, str]]  # (rule id or check, reason)
    rendered: str | None = None


class ProposalRecord(BaseModel):
    """One writer's proposal for one encounter: whether the verifier passes it, and each reviewer's vote (a
    reviewer judging several aspects approves when it approves every one). What the panel's agreement is
    measured on."""

    model_config = ConfigDict(frozen=True)
    encounter_id: str
    writer: str
    verified: bool
    votes: dict[str, bool]  # reviewer name -> approved


class TrajectoryBatch(StoredArtifact):
    model_config = ConfigDict(frozen=True)
    accepted: list[AcceptedTrajectory]
    rejected: list[RejectedTrajectory]
    proposals: list[ProposalRecord] = []
    qualification: list[QualificationScore] = []  # the panel's scores on the calibration set, when it was run

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        counts = Counter(f"{check}: {reason}" for r in self.rejected for check, reason in r.reasons)
        return counts.most_common(n)


class TrajectoriesIncomplete(TeacherUnavailable):
    """Some encounters could not be written because a teacher endpoint stayed unavailable."""

    def __init__(self, outages: Sequence[TeacherUnavailable], total: int):
        first = outages[0]
        self.role, self.base_url, self.unfinished = first.role, first.base_url, len(outages)
        RuntimeError.__init__(
            self,
            f"{len(outages)} of {total} encounters unfinished: {first} — the finished "
            "calls are cached; materialize again to continue where this stopped",
        )


@dataclass
class TeacherTeam:
    writers: Sequence[TrajectoryWriter]
    reviewers: Sequence[Reviewer]
    director: Director
    proposals_per_writer: int = 1
    concurrency: int = 4
    labels: dict[str, str] = field(default_factory=dict)  # role -> provider/model, for metadata


def build_brief(encounter, engine: RulesEngine, dossier: Dossier, recalled: Sequence[CitedEntry] = ()) -> Brief:
    decision = engine.decide(encounter)
    descriptions = {r.id: r.description for r in engine.rulebook.rules if r.id in set(decision.fired_rule_ids)}
    return Brief(
        species=encounter.species,
        dossier=dossier,
        decision=decision,
        rule_descriptions=descriptions,
        recalled=tuple(recalled),
    )


Recall = Callable[[Sequence[SampledEncounter]], dict[str, list[CitedEntry]]]


def memory_recall(memory, species: str, lore_version: str, dossier: Dossier, engine: RulesEngine, k: int = 4) -> Recall:
    """Recall, per encounter, the dossier entries semantic memory finds for the situation and the rules
    that fired (one batched embedding call; memory chunks that are not dossier entries are skipped)."""

    by_document: dict[str, list[CitedEntry]] = {}
    for _, entry in dossier.entries():
        by_document.setdefault(entry.source, []).append(entry)

    def recall(encounters: Sequence[SampledEncounter]) -> dict[str, list[CitedEntry]]:
        queries = []
        for sampled in encounters:
            decision = engine.decide(sampled.encounter)
            descriptions = {r.id: r.description for r in engine.rulebook.rules if r.id in set(decision.fired_rule_ids)}
            queries.append(recall_query(sampled.encounter, decision, descriptions))
        hits = memory.recall_many(species, lore_version, queries, k)
        out = {}
        for sampled, found in zip(encounters, hits):
            entries = []
            for hit in found:
                # memory chunks read "<document title>: <text>"
                entry = next((e for e in by_document.get(hit.doc_id, []) if hit.text.endswith(f": {e.text}")), None)
                if entry is not None and entry not in entries:
                    entries.append(entry)
            out[sampled.encounter_id] = entries
        return out

    return recall


def verification_failures(
    trajectory: Trajectory, sampled: SampledEncounter, engine: RulesEngine
) -> list[tuple[str, str]]:
    """The final gate: format, then the rules engine's verdict on the action and the spoken line, the
    guardrails on everything the trajectory says, and the text screen on its words (a teacher's output is
    trained on: it must not talk to the model either)."""
    failures = [("format", problem) for problem in trajectory.structural_problems()]
    if trajectory.encounter_id != sampled.encounter_id:
        failures.append(("format", "trajectory is for another encounter"))
    if failures:
        return failures
    verdict = engine.verify(sampled.encounter, trajectory.final_action, trajectory.spoken_line)
    unsafe = [
        (f"guardrail:{v.category}", f"the trajectory breaks the content policy ({v.evidence})")
        for v in guardrail_violations(trajectory.render())
    ]
    return list(verdict.reasons) + unsafe + _instructions_in(trajectory)


def _instructions_in(trajectory: Trajectory) -> list[tuple[str, str]]:
    """The trajectory's own words (thoughts, step texts, the spoken line) that read as instructions to a model;
    the grammar it is written in (`ACTION:`, `SAY:`) is not screened, only what it carries."""
    found = []
    for k, step in enumerate(trajectory.steps, start=1):
        words = [step.thought]
        if step.title == "SPEAK":
            words.append(spoken_in(step.action) or "")
        elif step.title != "DECIDE":
            words.append(step.action)
        for text in words:
            if finding := screen(text):
                found.append(("prompt_injection", f"step {k} reads as instructions to a model ({finding})"))
                break
    return found


def produce_trajectories(
    encounters: Sequence[SampledEncounter],
    engine: RulesEngine,
    dossier: Dossier,
    team: TeacherTeam,
    progress: Callable[[int, int], None] | None = None,
    recall: Recall | None = None,
) -> TrajectoryBatch:
    """Every encounter through the team: accepted, or rejected with reasons. An encounter whose teacher
    endpoint stayed unavailable is neither: the batch finishes what it can (those calls are cached) and
    then raises `TeacherUnavailable` for the rest, so no partial version is ever written and the next
    run retries exactly what is missing."""
    recalled = recall(encounters) if recall else {}

    records: list[ProposalRecord] = []

    def one(sampled: SampledEncounter) -> AcceptedTrajectory | RejectedTrajectory | TeacherUnavailable:
        brief = build_brief(sampled.encounter, engine, dossier, recalled.get(sampled.encounter_id, ()))
        try:
            proposals = [
                writer.write(sampled.encounter, brief, variant)
                for writer in team.writers
                for variant in range(team.proposals_per_writer)
            ]
            reviews = [[rev.review(p, sampled.encounter, brief) for rev in team.reviewers] for p in proposals]
            made = [
                proposal_record(p, rs, team.reviewers, not verification_failures(p, sampled, engine))
                for p, rs in zip(proposals, reviews)
            ]
            records.extend(made)  # one list at once: atomic, so one encounter's records stay together
            final = team.director.direct(sampled.encounter, brief, proposals, reviews)
            failures = verification_failures(final, sampled, engine)
            final_reviews = [] if failures else [rev.review(final, sampled.encounter, brief) for rev in team.reviewers]
        except TeacherUnavailable as outage:  # transient: not an answer, not a reject
            return outage
        except Exception as exc:  # a teacher failing on one encounter must not sink the batch
            return RejectedTrajectory(
                encounter_id=sampled.encounter_id,
                split=sampled.split,
                teacher=team.labels.get("writer", "?"),
                reasons=[("teacher_error", f"{type(exc).__name__}: {exc}"[:300])],
            )
        if failures:
            return RejectedTrajectory(
                encounter_id=sampled.encounter_id,
                split=sampled.split,
                teacher=final.teacher,
                reasons=failures,
                rendered=final.render(),
            )
        return AcceptedTrajectory(
            encounter_id=sampled.encounter_id, split=sampled.split, trajectory=final, reviews=final_reviews
        )

    results: list[AcceptedTrajectory | RejectedTrajectory] = []
    every = max(1, len(encounters) // 10)  # about ten progress lines a batch, whatever its size
    with ThreadPoolExecutor(max_workers=max(1, team.concurrency)) as pool:
        for done, result in enumerate(pool.map(one, encounters), start=1):
            results.append(result)
            if progress and (done % every == 0 or done == len(encounters)):
                progress(done, len(encounters))
    outages = [r for r in results if isinstance(r, TeacherUnavailable)]
    if outages:
        raise TrajectoriesIncomplete(outages, len(encounters))
    order = {e.encounter_id: i for i, e in enumerate(encounters)}  # threads finish in any order; the batch may not
    return TrajectoryBatch(
        accepted=[r for r in results if isinstance(r, AcceptedTrajectory)],
        rejected=[r for r in results if isinstance(r, RejectedTrajectory)],
        proposals=sorted(records, key=lambda r: order[r.encounter_id]),
    )


def proposal_record(
    proposal: Trajectory, reviews: Sequence[Review], reviewers: Sequence[Reviewer], verified: bool
) -> ProposalRecord:
    votes: dict[str, bool] = {}
    for reviewer, review in zip(reviewers, reviews):
        votes[reviewer.name] = votes.get(reviewer.name, True) and review.approved
    return ProposalRecord(encounter_id=proposal.encounter_id, writer=proposal.teacher, verified=verified, votes=votes)


def acceptance_and_coverage(
    batch: TrajectoryBatch, encounters: Sequence[SampledEncounter], engine: RulesEngine
) -> dict:
    """Share of encounters with an accepted trajectory, and share of rules that fire in one of them."""
    by_id = {e.encounter_id: e.encounter for e in encounters}
    fired = {rule_id for a in batch.accepted for rule_id in engine.decide(by_id[a.encounter_id]).fired_rule_ids}
    rules = engine.rulebook.rules
    return {
        "acceptance_rate": len(batch.accepted) / max(1, len(by_id)),
        "rule_coverage": len(fired) / max(1, len(rules)),
        "rules_never_exercised": sorted(r.id for r in rules if r.id not in fired),
    }


@dataclass(frozen=True)
class PanelMemberStats:
    """How one writer or reviewer did on a batch: writers by the verifier's verdict on their proposals,
    reviewers by how often their vote agrees with the verifier and with the other reviewers."""

    name: str
    role: str  # "writer" | "reviewer"
    judged: int  # proposals written, or votes cast
    verifier_pass_rate: float | None = None  # writers: share of their proposals the verifier passes
    agreement_with_verifier: float | None = None  # reviewers: approved exactly when the verifier passed
    agreement_with_reviewers: float | None = None  # reviewers: mean agreement with each other reviewer


def panel_statistics(proposals: Sequence[ProposalRecord]) -> list[PanelMemberStats]:
    """Per writer and per reviewer, from every proposal's verdict and votes (writers first, by name)."""
    stats = []
    for writer in sorted({p.writer for p in proposals}):
        own = [p for p in proposals if p.writer == writer]
        stats.append(PanelMemberStats(writer, "writer", len(own), sum(p.verified for p in own) / len(own)))
    reviewers = sorted({name for p in proposals for name in p.votes})
    for reviewer in reviewers:
        voted = [p for p in proposals if reviewer in p.votes]
        pairwise = []
        for other in reviewers:
            both = [p for p in voted if other != reviewer and other in p.votes]
            if both:
                pairwise.append(sum(p.votes[reviewer] == p.votes[other] for p in both) / len(both))
        stats.append(
            PanelMemberStats(
                reviewer,
                "reviewer",
                len(voted),
                agreement_with_verifier=sum(p.votes[reviewer] == p.verified for p in voted) / len(voted),
                agreement_with_reviewers=sum(pairwise) / len(pairwise) if pairwise else None,
            )
        )
    return stats
