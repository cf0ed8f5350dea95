"""Expert trajectories: proposed by the writer, reviewed, consolidated by the director, verified."""

from collections import Counter

from dagster import (
    AssetExecutionContext,
    MetadataValue,
    Output,
    asset,
    observable_source_asset,
)

from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import SOURCE_VERSION_READ, markdown_table, versioned
from srl_assets.partitions import species_partitions, versions_by_species
from srl_assets.resources import (
    ArtifactStoreResource,
    SemanticMemoryResource,
    TeachersResource,
)
from srl_forge.encounters import EncounterSet
from srl_forge.lore import SpeciesLore
from srl_forge.rulebook import CompiledRules
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.collaboration import (
    TeacherTeam,
    TrajectoryBatch,
    memory_recall,
    panel_statistics,
    produce_trajectories,
)
from srl_forge.teachers.openai_compatible import UsageLedger
from training.step_dataset import to_parquet


@observable_source_asset(
    partitions_def=species_partitions,
    group_name="sources",
    description="Voice files per species (voices/<species>.yaml): the intents and stock phrases the expert's "
    "lines are written from; read by the stages that speak (trajectories, the RLVR rows, evaluation).",
)
def voice_sources(context, teachers: TeachersResource):
    return versions_by_species(context.instance, teachers.voice_version)


@asset(
    partitions_def=species_partitions,
    group_name="trajectories",
    code_version="trajectories-6",
    kinds={"python", "openai", "parquet"},
    automation_condition=FRESH,
    deps=[voice_sources],
    description="Step-by-step expert trajectories (assess, recall lore, apply rule, decide, speak) written by "
    "the teachers and accepted by the rules engine; rejects kept in a table with their reasons.",
)
def expert_trajectories(
    context: AssetExecutionContext,
    lore: SpeciesLore,
    rules: CompiledRules,
    encounters: EncounterSet,
    artifacts: ArtifactStoreResource,
    teachers: TeachersResource,
    memory: SemanticMemoryResource,
) -> Output[TrajectoryBatch]:
    species = context.partition_key
    read_version = teachers.voice_version(species)
    with input_errors_as_failures():
        team = teachers.build(rules.rulebook)
        configured = team.team  # the writer's voice file is read here: a bad one fails before any call is made
    engine = RulesEngine(rules.rulebook)
    with teachers.outages_retried(context, team):
        dossier = team.loremaster.consolidate(lore)
        with input_errors_as_failures():
            qualified = team.qualified_team(engine, dossier)
        for score in qualified.left_out:
            context.log.warning(
                f"teacher {score.name} left out: its {score.role} score {score.score:.2f} is below the level "
                f"{score.level:.2f} ({score.detail})"
            )
        recall = memory_recall(memory.memory(), species, lore.version, dossier, engine)
        batch = produce_trajectories(
            encounters.encounters,
            engine,
            dossier,
            qualified.team,
            progress=lambda done, total: context.log.info(f"trajectories {done}/{total}"),
            recall=recall,
        ).model_copy(update={"qualification": qualified.scores})
    reject_rows = [
        {
            "encounter_id": r.encounter_id,
            "split": r.split,
            "teacher": r.teacher,
            "check": check,
            "reason": reason,
            "trajectory": r.rendered,
        }
        for r in batch.rejected
        for check, reason in r.reasons
    ]
    # the rejects also as a table, for reading them in a notebook or a spreadsheet
    rejects_uri = (
        artifacts.store().put_bytes("trajectory_rejects", species, to_parquet(reject_rows), ".parquet")
        if reject_rows
        else None
    )
    total = len(batch.accepted) + len(batch.rejected)
    usage = team.ledger.totals()
    example = batch.accepted[0].trajectory.render() if batch.accepted else "(none)"
    splits = Counter(a.split for a in batch.accepted)
    return versioned(
        batch,
        {
            SOURCE_VERSION_READ: read_version,
            "accepted": len(batch.accepted),
            "rejected": len(batch.rejected),
            "acceptance_rate": MetadataValue.float(len(batch.accepted) / max(1, total)),
            "accepted_train": splits["train"],
            "accepted_validation": splits["validation"],
            "accepted_test": splits["test"],
            "lore_recalled_from_memory": sum(
                any(s.title == "RECALL LORE" and "My memory" in s.thought for s in a.trajectory.steps)
                for a in batch.accepted
            ),
            "mean_steps": MetadataValue.float(
                sum(len(a.trajectory.steps) for a in batch.accepted) / max(1, len(batch.accepted))
            ),
            "top_reject_reasons": markdown_table(["reason", "count"], batch.top_reasons()),
            "teachers": MetadataValue.json(qualified.team.labels),
            # per model of the panel: its calibration score, what it did in this batch, and what it cost
            "teacher_panel": panel_table(batch, configured, team.ledger),
            "accepted_by_writer": MetadataValue.json(
                dict(Counter(a.trajectory.teacher.removesuffix("+director") for a in batch.accepted))
            ),
            "teacher_qualification": MetadataValue.json(
                {
                    s.name: {"role": s.role, "score": round(s.score, 3), "qualified": s.qualified}
                    for s in batch.qualification
                }
            ),
            "teacher_usage": markdown_table(
                ["model", "calls", "from cache", "retries", "re-asks", "prompt tokens", "completion tokens", "USD"],
                [
                    [
                        name,
                        *(int(row[k]) for k in ("calls", "cache_hits", "retries", "reasks")),
                        int(row["prompt_tokens"]),
                        int(row["completion_tokens"]),
                        f"{row['cost_usd']:.4f}",
                    ]
                    for name, row in sorted(team.ledger.by_role.items())
                ],
            ),
            "llm_calls": int(usage["calls"]),
            "llm_cache_hits": int(usage["cache_hits"]),
            "llm_retries": int(usage["retries"]),
            "llm_reasks": int(usage["reasks"]),  # answers instructor could not parse or validate, asked again
            # an LLM loremaster's entries left out of the dossier: no known citation, or words that talk to a model
            "dossier_entries_dropped": MetadataValue.json(dict(getattr(team.loremaster, "dropped", {}))),
            "prompt_tokens": int(usage["prompt_tokens"]),
            "completion_tokens": int(usage["completion_tokens"]),
            "cost_usd": MetadataValue.float(float(usage["cost_usd"])),
            "example_trajectory": MetadataValue.md(f"```\n{example}\n```"),
            "rejects_uri": MetadataValue.path(rejects_uri or "(no rejects)"),
        },
    )


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def panel_table(batch: TrajectoryBatch, team: TeacherTeam, ledger: UsageLedger) -> MetadataValue:
    """One row per writer and reviewer of the configured `team`, the members left out at qualification last:
    what a studio compares providers on."""
    scores = {s.name: s for s in batch.qualification}
    accepted = Counter(a.trajectory.teacher.removesuffix("+director") for a in batch.accepted)
    # a member's calls are in the ledger under its client's role: its own name in a panel, else the role's
    ledger_key = {m.name: getattr(getattr(m, "client", None), "role", None) for m in (*team.writers, *team.reviewers)}

    def cost(name: str) -> list:
        usage = ledger.by_role.get(ledger_key.get(name) or "", {})
        tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        return [int(usage.get("calls", 0)), int(tokens), f"{usage.get('cost_usd', 0.0):.4f}"]

    def level(name: str) -> str:
        score = scores.get(name)
        return f"{score.score:.2f} / {score.level:.2f}" if score else "—"

    rows = [
        [
            m.name,
            m.role,
            level(m.name),
            m.judged,
            _share(m.verifier_pass_rate),
            accepted[m.name] if m.role == "writer" else "—",
            _share(m.agreement_with_verifier),
            _share(m.agreement_with_reviewers),
            *cost(m.name),
        ]
        for m in panel_statistics(batch.proposals)
    ]
    rows += [
        [s.name, f"{s.role} (left out)", level(s.name), 0, "—", "—", "—", "—", *cost(s.name)]
        for s in batch.qualification
        if not s.qualified
    ]
    headers = ["model", "role", "qualification / level", "proposals or votes", "verifier pass rate"]
    headers += ["kept by director", "agrees with verifier", "agrees with reviewers", "calls", "tokens", "USD"]
    return markdown_table(headers, rows)
