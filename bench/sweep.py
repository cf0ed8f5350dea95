"""Training sweeps on the validation split: `python -m bench.sweep NAME [--species vampire] [--home DIR]`
(`make bench-sweep SWEEP=NAME`).

Every kept training choice is backed by one of these. A sweep trains one setting after another from the
same species' data (the embedded pipeline's datasets, built once in `--home`), each through the project's
own job entry points (`training.srl`, `training.rlvr`), and scores each trained adapter greedily on **all**
validation encounters (never the held-out test split; an SRL-only sweep rolls its adapters out step by step on
the first 30): decision accuracy with a 95% bootstrap interval,
format rate, the most chosen action's share. Next to them: the best constant action and the feature
classifier on the same encounters. Written to `bench/results/sweep-<name>-<species>.{json,md}`.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dagster import AssetKey
from peft import PeftModel

from bench.machine import machine
from bench.report import RESULTS
from bench.run import embedded_home
from srl_assets.chains import DATA_CHAIN
from srl_assets.training_assets import directory_digest
from srl_forge.artifacts import decode_artifact
from srl_forge.encounter import Encounter
from srl_forge.encounters import EncounterSet, condition_paths
from srl_forge.grading import best_constant_action
from srl_forge.hashing import content_hash
from srl_forge.policy import parse_decision, render_answer
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.stats import Interval, mean_interval
from srl_forge.tables import markdown_table
from srl_forge.teachers.collaboration import TrajectoryBatch
from srl_forge.teachers.programmatic import NO_RULE, decisive_entries, rule_step_action
from srl_forge.yaml_files import load_yaml
from training.evaluation import EvalCase, score_policy, stepwise_answers
from training.feature_classifier import FeatureClassifier
from training.grpo_runner import GRPOJob
from training.learning_curve import predictions_count
from training.model_loading import load_base_model, load_tokenizer, resolve_model
from training.policy_eval import outcome_validation
from training.rlvr import RLVRConfig, RLVRJob, applied_rules, decision_text, run_rlvr_job
from training.srl import SRLConfig, SRLJob, run_srl_job
from training.step_dataset import RowDataset, to_parquet

BASELINES = Path(__file__).resolve().parent / "sweep_baselines"


@dataclass(frozen=True)
class Setting:
    label: str
    rlvr: dict = field(default_factory=dict)  # RLVRConfig fields over the baseline's `rlvr` stage
    srl: dict | None = None  # train SRL first (SRLConfig fields over the `srl` stage) and start RLVR from it
    # the expert answer's thought: "rules" (applied rules first), "conditional" (only the rules whose condition
    # held in this encounter: a species' unconditional bans are the same in every answer), "assess" (the expert's
    # ASSESS step, then the rules: the recipe's since sweep evidence-thought), "evidence" (the facts the species'
    # rule conditions read, then the rules) or "decision" (the choice first). The default stays the thought the
    # earlier sweeps trained, so their settings keep their keys and meaning.
    thought: str = "rules"
    budget: str = "standard"  # the frozen baseline the fields override: bench/sweep_baselines/<budget>.yaml
    start_from: Setting | None = None  # continue from this setting's trained adapter (its seconds are counted)
    # "direct": train the RLVR stage and score its answers; "stepwise": the SRL stage alone, scored by rolling
    # its adapter out step by step (the way the evaluation scores SRL) on the first STEPWISE_ENCOUNTERS
    score: str = "direct"
    # the answer budget the adapter is scored with (the evaluation's 96); a longer thought needs more. Scoring, not
    # training: not part of the setting's key, so one trained adapter is scored at several budgets
    score_tokens: int = 96


STEPWISE_ENCOUNTERS = 30  # a rollout costs a generation round per step: the evaluation's `standard` share


SFT_ONLY = {"max_steps": 0}
THREE_EPOCHS = Setting("rules first (the applied rules, then the action)", {**SFT_ONLY, "sft_epochs": 3.0})
SRL_NOW = {"sft_learning_rate": 2e-3, "num_generations": 8, "prompts_per_step": 1, "max_steps": 1}  # the recipe's
SRL_PARSES = Setting("SRL 0.3 epoch + 1 GRPO step", srl={**SRL_NOW, "sft_epochs": 0.3}, score="stepwise")
# the standard recipe's RLVR stage (training/recipes/standard.yaml) over the frozen baseline
RLVR_NOW = {"sft_learning_rate": 2e-3, "num_generations": 8, "prompts_per_step": 1, "sft_epochs": 2.0, "max_steps": 8}
# the standard recipe's SFT-only stage, with the curve probed four times
SFT_SEVEN = {**SFT_ONLY, "sft_learning_rate": 2e-3, "sft_epochs": 7.0, "curve_points": 4}
# the chain's RLVR stage on the ASSESS-first answer with twice the recipe's supervised epochs, no GRPO
ASSESS_FOUR = Setting(
    "SRL 0.3 epoch, then RLVR 4 epochs, no GRPO",
    {**RLVR_NOW, "sft_epochs": 4.0, "max_steps": 0, "curve_points": 4},
    start_from=SRL_PARSES,
    thought="assess",
    score_tokens=192,
)
SWEEPS: dict[str, tuple[str, list[Setting]]] = {
    "thought": (
        "What the expert answer's thought holds, 3 supervised epochs (lr 1e-3), no GRPO.",
        [
            Setting(
                "decision first ('I choose X: rule puts it first')", {**SFT_ONLY, "sft_epochs": 3.0}, thought="decision"
            ),
            THREE_EPOCHS,
        ],
    ),
    "sft-lr": (
        "The supervised phase's learning rate (LoRA r16, batch 8), 2 epochs, no GRPO.",
        [
            Setting("lr 5e-4", {**SFT_ONLY, "sft_epochs": 2.0, "sft_learning_rate": 5e-4}),
            Setting("lr 1e-3", {**SFT_ONLY, "sft_epochs": 2.0, "sft_learning_rate": 1e-3}),
            Setting("lr 2e-3", {**SFT_ONLY, "sft_epochs": 2.0, "sft_learning_rate": 2e-3}),
        ],
    ),
    "sft-epochs": (
        "Epochs of the supervised phase (lr 1e-3, batch 8), no GRPO.",
        [
            Setting("1 epoch", {**SFT_ONLY, "sft_epochs": 1.0}),
            Setting("2 epochs", {**SFT_ONLY, "sft_epochs": 2.0}),
            Setting("3 epochs", {**SFT_ONLY, "sft_epochs": 3.0}),
            Setting("4 epochs", {**SFT_ONLY, "sft_epochs": 4.0}),
        ],
    ),
    "precision": (
        "bf16 autocast against float32, 1 supervised epoch then 2 GRPO steps: seconds and accuracy.",
        [
            Setting("float32", {"sft_epochs": 1.0, "max_steps": 2, "precision": "float32"}),
            Setting("bf16 autocast", {"sft_epochs": 1.0, "max_steps": 2, "precision": "bfloat16"}),
        ],
    ),
    "grpo": (
        "GRPO (the verified, graded reward) on top of 3 supervised epochs: steps, group size, learning rate.",
        [
            THREE_EPOCHS,
            Setting(
                "+ 8 steps x 2 prompts x 4 rollouts, lr 1e-4",
                {"sft_epochs": 0.0, "max_steps": 8},
                start_from=THREE_EPOCHS,
            ),
            Setting(
                "+ 24 steps x 2 prompts x 4 rollouts, lr 1e-4",
                {"sft_epochs": 0.0, "max_steps": 24},
                start_from=THREE_EPOCHS,
            ),
            Setting(
                "+ 12 steps x 1 prompt x 8 rollouts, lr 1e-4",
                {"sft_epochs": 0.0, "max_steps": 12, "prompts_per_step": 1, "num_generations": 8},
                start_from=THREE_EPOCHS,
            ),
        ],
    ),
    "srl-first": (
        "Does SRL before RLVR help, at about equal seconds? The RLVR stage from the SRL adapter against "
        "more supervised epochs from the base model.",
        [
            Setting("RLVR stage from base, 3 epochs + 8 GRPO steps", {"sft_epochs": 3.0, "max_steps": 8}),
            Setting(
                "SRL (0.5 epoch + 8 steps), then the same RLVR stage",
                {"sft_epochs": 3.0, "max_steps": 8},
                srl={"sft_epochs": 0.5, "max_steps": 8},
            ),
            Setting("RLVR stage from base, 5 epochs + 8 GRPO steps", {"sft_epochs": 5.0, "max_steps": 8}),
        ],
    ),
    "srl-steps": (
        "The SRL stage alone (the similarity reward): how many supervised epochs over the expert's step rows "
        "before its adapter, rolled out step by step from ASSESS, writes parseable steps and decides.",
        [
            Setting(f"SRL {epochs:g} epoch + 1 GRPO step", srl={**SRL_NOW, "sft_epochs": epochs}, score="stepwise")
            for epochs in (0.05, 0.15, 0.3)
        ],
    ),
    "srl-chain": (
        "What an SRL stage that parses (0.3 epochs of step rows, sweep srl-steps) adds before the RLVR stage: "
        "SRL→RLVR against RLVR-only given the chain's seconds as supervised epochs, and the same RLVR stage "
        "from the base model.",
        [
            Setting("SRL 0.3 epoch, then RLVR 2 epochs + 8 GRPO steps", RLVR_NOW, start_from=SRL_PARSES),
            Setting("RLVR-only, the chain's seconds: 5.3 epochs + 8 GRPO steps", {**RLVR_NOW, "sft_epochs": 5.3}),
            Setting("RLVR stage alone from the base model: 2 epochs + 8 GRPO steps", RLVR_NOW),
        ],
    ),
    "conditional-thought": (
        "Which rules the thought names: every decisive rule, or only those whose condition held here (a species' "
        "unconditional bans, zombie.mindless and zombie.relentless, open every zombie answer and carry nothing of "
        "the encounter); the standard SFT-only stage (7 epochs, lr 2e-3), no GRPO.",
        [
            Setting("every decisive rule, 7 epochs", SFT_SEVEN),
            Setting("only the rules whose condition held, 7 epochs", SFT_SEVEN, thought="conditional"),
        ],
    ),
    "sft-updates": (
        "More supervised updates in the same seconds (LoRA dislikes large batches): batch 4 against 8, and a "
        "higher learning rate; the standard SFT-only stage (7 epochs, lr 2e-3), no GRPO.",
        [
            Setting("batch 8, lr 2e-3 (the recipe)", SFT_SEVEN),
            Setting("batch 4, lr 2e-3", {**SFT_SEVEN, "sft_batch_size": 4}),
            Setting("batch 8, lr 4e-3", {**SFT_SEVEN, "sft_learning_rate": 4e-3}),
        ],
    ),
    "evidence-thought": (
        "Whether the thought should copy the facts before naming the rules (on the validation pairs that differ "
        "only in hunger the adapters answered the same text: the rule choice did not read the number): the "
        "expert's ASSESS step, or the facts the species' rule conditions read, before every decisive rule; the "
        "standard SFT-only stage (7 epochs, lr 2e-3), no GRPO; each adapter scored with the evaluation's 96-token "
        "answer budget and with 192 (the longer thoughts do not fit 96).",
        [
            Setting(f"{label}, scored at {tokens} tokens", SFT_SEVEN, thought=thought, score_tokens=tokens)
            for tokens in (96, 192)
            for label, thought in (
                ("every decisive rule", "rules"),
                ("the ASSESS step, then every decisive rule", "assess"),
                ("the facts the rules read, then every decisive rule", "evidence"),
            )
        ],
    ),
    "assess-chain": (
        "The chain on the recipe's ASSESS-first answer (scored at the 192-token decision budget): the SRL stage "
        "(0.3 epoch of step rows + 1 GRPO step), then the RLVR stage as the recipe trains it (2 supervised epochs + "
        "8 GRPO steps), against twice the supervised epochs, scored before and after 4 GRPO steps on top of them "
        "(what GRPO adds or undoes).",
        [
            Setting(
                "SRL 0.3 epoch, then RLVR 2 epochs + 8 GRPO steps (the recipe)",
                RLVR_NOW,
                start_from=SRL_PARSES,
                thought="assess",
                score_tokens=192,
            ),
            ASSESS_FOUR,
            Setting(
                "SRL 0.3 epoch, then RLVR 4 epochs + 4 GRPO steps",
                {**RLVR_NOW, "sft_epochs": 0.0, "max_steps": 4},
                start_from=ASSESS_FOUR,
                thought="assess",
                score_tokens=192,
            ),
            Setting(
                "SRL 0.3 epoch, then RLVR 4 epochs + 4 GRPO steps at lr 2e-5",
                {**RLVR_NOW, "sft_epochs": 0.0, "max_steps": 4, "learning_rate": 2e-5},
                start_from=ASSESS_FOUR,
                thought="assess",
                score_tokens=192,
            ),
        ],
    ),
    "quick": (
        "The quick budget (the demo's minutes): its RLVR stage's supervised epochs and learning rate, from "
        "the base model.",
        [
            Setting("RLVR 1 epoch lr 1e-3 + 1 GRPO step", {"sft_epochs": 1.0, "max_steps": 1}, budget="quick"),
            Setting(
                "RLVR 1 epoch lr 2e-3 + 1 GRPO step",
                {"sft_epochs": 1.0, "max_steps": 1, "sft_learning_rate": 2e-3},
                budget="quick",
            ),
            Setting(
                "RLVR 1.5 epochs lr 2e-3 + 1 GRPO step",
                {"sft_epochs": 1.5, "max_steps": 1, "sft_learning_rate": 2e-3},
                budget="quick",
            ),
        ],
    ),
}


def build_data(species: str, home: Path) -> dict:
    """The species' datasets and encounters, materialized once per home by the embedded pipeline."""

    defs, instance = embedded_home(species, home)
    # Built each time (half a minute): the data follows the code; settings trained on identical data are reused.
    selection = [AssetKey(k) for k in DATA_CHAIN]
    result = defs.resolve_job_def("species_pipeline").execute_in_process(
        partition_key=species, instance=instance, asset_selection=selection
    )
    if not result.success:
        raise RuntimeError(f"building the {species} datasets failed (run {result.run_id})")

    store = defs.resources["artifacts"].store()
    values = {}
    for name, kind in (
        ("srl_dataset", RowDataset),
        ("rlvr_dataset", RowDataset),
        ("expert_trajectories", TrajectoryBatch),
        ("encounters", EncounterSet),
    ):
        pointer = store.get_pointer(name, species)
        values[name] = decode_artifact(store.get_bytes(pointer["uri"]), kind).stored_at(pointer["uri"])
    return values


@functools.cache
def conditional_thought(species: str):
    """The thought naming only the rules whose condition held: the three highest decisive rules once a species'
    standing rules (no condition, no event gate: they fire in every encounter) are left out."""

    rulebook = load_rulebook(Path(__file__).resolve().parent.parent / "rules", species)
    standing = {r.id for r in rulebook.rules if not r.when and not r.events.only_during and not r.events.not_during}
    engine = RulesEngine(rulebook)

    def thought(encounter) -> str:
        entries = [e for e in decisive_entries(engine.decide(encounter), max_rules=99) if e.rule_id not in standing]
        return " ".join(rule_step_action(e) for e in entries[:3]) or NO_RULE

    return thought


@functools.cache
def evidence_paths(species: str) -> tuple[str, ...]:
    """Every encounter path one of the species' rules reads, in rulebook order."""

    rulebook = load_rulebook(Path(__file__).resolve().parent.parent / "rules", species)
    return tuple(dict.fromkeys(p for r in rulebook.rules for p in condition_paths(r.when)))


def evidence_text(encounter) -> str:
    """The facts the species' rules read, copied from the encounter: `hunger 0.59; items torch; ...`."""

    def value(v) -> str:
        if isinstance(v, tuple):
            return ", ".join(v) or "none"
        return f"{v:.2f}" if isinstance(v, float) else str(v).lower()

    return "; ".join(f"{p.split('.')[-1]} {value(encounter.lookup(p))}" for p in evidence_paths(encounter.species))


def expert_answer(trajectory, thought: str, encounter=None) -> str:
    if thought == "assess":  # the recipe's answer
        return decision_text(trajectory)
    rules = applied_rules(trajectory)  # every decisive rule
    if thought == "rules":
        return render_answer(rules, trajectory.final_action, trajectory.spoken_line)
    if thought == "evidence":
        return render_answer(f"{evidence_text(encounter)}. {rules}", trajectory.final_action, trajectory.spoken_line)
    if thought == "conditional":
        rules = conditional_thought(trajectory.species)(encounter)
        return render_answer(rules, trajectory.final_action, trajectory.spoken_line)
    decide = next(s for s in trajectory.steps if s.title == "DECIDE")
    reason = decide.thought
    if "I choose " in reason:  # the earlier format: the choice, then the one rule that puts it first
        reason = "I choose " + reason.split("I choose ", 1)[1].split(";")[0].split(". ")[0].rstrip(".") + "."
    return render_answer(reason, trajectory.final_action, trajectory.spoken_line)


def merged_policy(adapter_dir: Path, model_path: str):
    """A trained adapter merged into a fresh base (as the evaluation scores it), and its tokenizer."""

    model = PeftModel.from_pretrained(load_base_model(model_path), str(adapter_dir)).merge_and_unload()
    return model, load_tokenizer(model_path)


def validation_score(adapter_dir: Path, model_path: str, rows: list[dict], max_new_tokens: int = 96) -> dict:
    model, tokenizer = merged_policy(adapter_dir, model_path)
    started = time.perf_counter()
    result = outcome_validation(model, tokenizer, rows, max_new_tokens=max_new_tokens)
    correct = [
        {"decision_accuracy": float(c is not None and c in r["top_actions"]), "line": None, "format": c is not None}
        for c, r in zip(result["chosen"], rows)
    ]
    interval = mean_interval([c["decision_accuracy"] for c in correct]).model_dump()
    counts = predictions_count(result["chosen"])
    return {
        "decision_accuracy": interval,
        "format_rate": result["format_rate"],
        "predictions": counts,
        "top_share": max(counts.values(), default=0) / max(1, len(rows)),
        "samples": result["samples"][:3],
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


def stepwise_score(adapter_dir: Path, model_path: str, rows: list[dict]) -> dict:
    """The SRL adapter rolled out step by step from ASSESS, scored as the evaluation scores it."""

    model, tokenizer = merged_policy(adapter_dir, model_path)
    started = time.perf_counter()
    cases = [EvalCase(row=r, encounter=Encounter.model_validate(r["encounter"])) for r in rows]
    answers = stepwise_answers(model, tokenizer, cases, max_new_tokens=96)
    scored = score_policy(cases, answers, "stepwise")
    chosen = [parse_decision_action(a) for a in answers]
    counts = predictions_count(chosen)
    return {
        "decision_accuracy": scored.metrics.decision_accuracy.model_dump(),
        "format_rate": scored.metrics.format_rate.value,
        "predictions": counts,
        "top_share": max(counts.values(), default=0) / max(1, len(rows)),
        "samples": answers[:3],
        "scored_encounters": len(rows),
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


def parse_decision_action(answer: str) -> str | None:
    parsed = parse_decision(answer)
    return parsed[0] if parsed else None


def setting_key(setting: Setting) -> dict:
    fields = {k: v for k, v in setting.__dict__.items() if k not in ("label", "start_from", "score_tokens")}
    return {**fields, "start_from": setting_key(setting.start_from)} if setting.start_from else fields


def baseline_config(config_class, budget: str, stage: str, overrides: dict):
    """A stage's config from the sweep's frozen baseline, not the live recipe, so a sweep keeps measuring one
    thing (and its cache stays valid) after the recipes take up its findings."""

    baseline = load_yaml((BASELINES / f"{budget}.yaml").read_text())
    return config_class(**{**baseline.get("defaults", {}), **baseline.get(stage, {}), **overrides})


def run_setting(setting: Setting, species: str, data: dict, work: Path, log: Callable[[str], None]) -> dict:
    rlvr_rows, srl_rows = data["rlvr_dataset"], data["srl_dataset"]
    prompts = {r["encounter_id"]: r["prompt"] for r in rlvr_rows.split("train")}
    encounters = {e.encounter_id: e.encounter for e in data["encounters"].by_split("train")}
    answers = [
        {
            "prompt": prompts[a.encounter_id],
            "completion_text": expert_answer(a.trajectory, setting.thought, encounters.get(a.encounter_id)),
        }
        for a in data["expert_trajectories"].accepted
        if a.encounter_id in prompts
    ]
    # the label is not part of the key: the same setting in two sweeps is trained once
    key = content_hash(
        {"setting": setting_key(setting), "data": rlvr_rows.artifact_version, "srl_data": srl_rows.artifact_version}
    )[:12]
    folder = work / key
    files = folder / "data"
    files.mkdir(parents=True, exist_ok=True)
    for name, rows in (
        ("rlvr_train", rlvr_rows.split("train")),
        ("rlvr_val", rlvr_rows.split("validation")),
        ("srl_train", srl_rows.split("train")),
        ("srl_val", srl_rows.split("validation")),
        ("answers", answers),
    ):
        (files / f"{name}.parquet").write_bytes(to_parquet(rows))
    model_cache = str(Path(os.environ["SRL_FORGE_HOME"]))
    seconds, parent, phases = 0.0, None, {}
    if setting.start_from is not None:
        before = run_setting(setting.start_from, species, data, work, log)
        seconds, phases = before["training_seconds"], {"start": before["training_seconds"]}
        stage = "srl_out" if setting.start_from.score == "stepwise" else "rlvr_out"  # the adapter it ended with
        parent = str(work / before["folder"] / stage / "adapter")
    if setting.srl is not None:
        srl_job = SRLJob(
            config=baseline_config(SRLConfig, setting.budget, "srl", setting.srl),
            train_data=str(files / "srl_train.parquet"),
            validation_data=str(files / "srl_val.parquet"),
            work_dir=str(folder / "srl_work"),
            output_dir=str(folder / "srl_out"),
            model_cache=model_cache,
        )
        srl_metrics = _cached(folder / "srl_out", lambda: run_srl_job(srl_job, log=log, step_log=lambda _: None))
        seconds += srl_metrics["training_seconds"]
        phases["srl"] = srl_metrics["training_seconds"]
        parent = str(folder / "srl_out" / "adapter")
    if setting.score == "stepwise":
        model_path = resolve_model(srl_job.config.model, Path(model_cache))
        score = stepwise_score(Path(parent), model_path, rlvr_rows.split("validation")[:STEPWISE_ENCOUNTERS])
        return {
            **setting_summary(setting, key, srl_metrics, seconds, phases),
            "adapter": directory_digest(Path(parent))[:12],
            **score,
        }
    job: GRPOJob = RLVRJob(
        config=baseline_config(RLVRConfig, setting.budget, "rlvr", setting.rlvr),
        train_data=str(files / "rlvr_train.parquet"),
        validation_data=str(files / "rlvr_val.parquet"),
        sft_data=str(files / "answers.parquet"),
        parent_adapter=parent,
        work_dir=str(folder / "rlvr_work"),
        output_dir=str(folder / "rlvr_out"),
        model_cache=model_cache,
    )
    metrics = _cached(folder / "rlvr_out", lambda: run_rlvr_job(job, log=log, step_log=lambda _: None))
    seconds += metrics["training_seconds"]
    phases["rlvr"] = metrics["training_seconds"]
    model_path = resolve_model(job.config.model, Path(model_cache))
    score = validation_score(
        folder / "rlvr_out" / "adapter", model_path, rlvr_rows.split("validation"), setting.score_tokens
    )
    return {
        **setting_summary(setting, key, metrics, seconds, phases),
        "adapter": directory_digest(folder / "rlvr_out" / "adapter")[:12],
        **score,
    }


def setting_summary(setting: Setting, key: str, metrics: dict, seconds: float, phases: dict) -> dict:
    """What a sweep row records of the last stage it trained."""
    return {
        "label": setting.label,
        "setting": setting_key(setting),
        "folder": key,
        "sft_steps": metrics["sft"]["steps"],
        "grpo_steps": metrics["grpo_steps"],
        "training_seconds": round(seconds, 1),
        "stage_seconds": phases,
        "precision": metrics["precision"],
        "learning_curve": metrics["learning_curve"],
        "kept_fraction": [s["kept_fraction"] for s in metrics["steps"]],
        "zero_std_share": [s["zero_std_share"] for s in metrics["steps"]],
    }


def _cached(output: Path, train: Callable[[], dict]) -> dict:
    """A setting trained before in this home (same data, same setting) is read back, not retrained."""
    done = output / "metrics.json"
    if done.exists() and (output / "adapter").exists():
        return json.loads(done.read_text())
    return train()


def references(data: dict, limit: int | None = None) -> dict:
    encounters = data["encounters"]
    train = [e for e in encounters.by_split("train") if e.label]
    rows = data["rlvr_dataset"].split("validation")[:limit]
    vocabulary = [s["action"] for s in rows[0]["action_scores"]]
    constant = best_constant_action([e.label for e in train], vocabulary)
    predicted = (
        FeatureClassifier()
        .fit([e.encounter for e in train], [e.label.top_actions for e in train])
        .predict([Encounter.model_validate(r["encounter"]) for r in rows])
    )
    return {
        "best_constant": {
            "action": constant,
            **mean_interval([float(constant in r["top_actions"]) for r in rows]).model_dump(),
        },
        "feature_classifier": mean_interval(
            [float(p in r["top_actions"]) for p, r in zip(predicted, rows)]
        ).model_dump(),
        "validation_encounters": len(rows),
    }


def row_commits(out: dict) -> str:
    """The commit the rows were trained at, or each row's where they differ (rows from before rows recorded
    theirs count as the run's)."""
    commits = [r.get("commit", out["commit"]) for r in out["results"]]
    if len(set(commits)) <= 1:
        return commits[0] if commits else out["commit"]
    return "; ".join(
        f"{c} (rows {', '.join(str(i + 1) for i, x in enumerate(commits) if x == c)})" for c in dict.fromkeys(commits)
    )


def to_markdown(out: dict) -> str:
    refs = out["references"]

    def cell(m):
        return Interval(**m).cell()

    lines = [
        f"# Sweep `{out['name']}`: {out['species']} ({out['date']})",
        "",
        out["question"],
        "",
        f"Machine: {out['machine']['cpu']}, {out['machine']['cores']} cores, torch {out['machine']['torch']} "
        f"({out['machine']['torch_threads']} threads). Commit {row_commits(out)}. Scored greedily on "
        f"{refs['validation_encounters']} validation encounters (not the held-out test split)"
        + (", each adapter rolled out step by step from ASSESS" if out.get("stepwise") else "")
        + "; 95% bootstrap intervals.",
        "",
        markdown_table(
            ["setting", "SFT steps", "GRPO steps", "training s", "decision acc.", "format", "most chosen share"],
            [
                [
                    r["label"],
                    r["sft_steps"],
                    r["grpo_steps"],
                    f"{r['training_seconds']:.0f}",
                    cell(r["decision_accuracy"]),
                    f"{r['format_rate']:.2f}",
                    f"{r['top_share']:.2f}",
                ]
                for r in out["results"]
            ]
            + [
                [
                    f"*best constant (`{refs['best_constant']['action']}`)*",
                    "",
                    "",
                    "",
                    cell(refs["best_constant"]),
                    "",
                    "1.00",
                ],
                [
                    "*feature classifier (decision tree, train split)*",
                    "",
                    "",
                    "",
                    cell(refs["feature_classifier"]),
                    "",
                    "",
                ],
            ],
        ),
        "",
    ]
    lines += ["Learning curves (validation sample probed during training: phase/step: decision accuracy, format):", ""]
    for r in out["results"]:
        points = ", ".join(
            f"{p['phase']}/{p['step']}: {p['decision_accuracy']:.2f}, {p['format_rate']:.2f}"
            for p in r["learning_curve"]
        )
        lines.append(f"- {r['label']}: {points}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", choices=sorted(SWEEPS))
    parser.add_argument("--species", default="vampire")
    parser.add_argument(
        "--home",
        default=None,
        help="home folder for the data and the trained settings "
        "(default: .forge-sweeps/<species>; settings already trained there are reused)",
    )
    parser.add_argument("--only", type=int, nargs="*", help="run only these settings (0-based)")
    args = parser.parse_args(argv)

    question, settings = SWEEPS[args.sweep]
    home = Path(args.home or Path.cwd() / ".forge-sweeps" / args.species).resolve()
    data = build_data(args.species, home)
    stepwise = all(s.score == "stepwise" for s in settings)
    refs = references(data, STEPWISE_ENCOUNTERS if stepwise else None)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    stem = RESULTS / f"sweep-{args.sweep}-{args.species}"
    previous = (
        json.loads(stem.with_suffix(".json").read_text())["results"] if stem.with_suffix(".json").exists() else []
    )
    results = {r["label"]: r for r in previous}
    for i, setting in enumerate(settings):
        if args.only is not None and i not in args.only:
            continue
        print(f"[{args.sweep}] {setting.label}", flush=True)
        results[setting.label] = {
            **run_setting(setting, args.species, data, home / "sweeps", lambda m: print(m, flush=True)),
            "commit": commit,  # a sweep's rows may come from several invocations (--only)
        }
    out = {
        "name": args.sweep,
        "species": args.species,
        "question": question,
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "references": refs,
        "stepwise": stepwise,
        "results": [results[s.label] for s in settings if s.label in results],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(to_markdown(out))
    print(to_markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
