"""The training job SRL, RLVR and the ablations run: load the policy (a fresh LoRA or a parent adapter), a
supervised phase on the expert's text (completion-only loss, epochs over the train rows), then GRPO with the
dynamic-sampling trainer (checkpointed, resumable), probing a fixed validation sample at fixed points
throughout (the learning curve); save the adapter, model card, metrics and curves. A `Task` supplies what
differs: rewards, dataset columns, the expert text and the probe."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srl_forge.artifacts import StoredArtifact
from srl_forge.errors import InputError
from srl_forge.tables import markdown_table
from srl_forge.yaml_files import load_yaml
from training.memory import PeakMemory
from training.model_loading import (
    DEFAULT_POLICY,
    Quantization,
    bf16_supported,
    load_policy,
    load_tokenizer,
    lora_config,
    resolve_model,
)
from training.plots import reward_curve_png

DEFAULT_EPSILON = 1e-4  # dynamic sampling: rewards in a group this close are "all alike"
RECIPES = Path(__file__).resolve().parent / "recipes"
BUDGETS = ("tiny", "quick", "standard", "full")
Precision = Literal["auto", "float32", "bfloat16"]


class GRPOTrainingConfig(BaseModel):
    """One training job: a supervised phase on expert text, then GRPO. Budgets are recipe files
    (`training/recipes/<budget>.yaml`, a section per stage); the field defaults are the quick budget's."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str = DEFAULT_POLICY
    quantization: Quantization = "none"
    # bf16 autocast where the hardware has it (this CPU's AVX512-BF16: 1.7x the LoRA training tokens/s and 3x
    # the generation speed of float32, bench/results/sweep-precision.md); "float32" to turn it off.
    precision: Precision = "auto"
    lora_r: int = 16
    lora_alpha: int = 32
    # No LoRA dropout on the CPU budgets: the dropout masks cost a fifth of every CPU training step. `full`: 0.05.
    lora_dropout: float = 0.0
    # The supervised phase: epochs over the job's expert rows, loss on the completion only. It is where the
    # decision is learned on a CPU budget (bench/results/sweep-*.md); 0 skips it.
    sft_epochs: float = Field(default=1.0, ge=0)
    sft_batch_size: int = Field(default=8, ge=1)
    sft_learning_rate: float = Field(default=2e-3, gt=0)  # LoRA: ~10x a full fine-tune's rate; sweep-sft-lr
    sft_warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    # GRPO
    num_generations: int | None = None  # None: 8 on a GPU, 4 on CPU
    prompts_per_step: int = Field(default=1, ge=1)  # sweep-grpo: one prompt x more rollouts
    max_steps: int = Field(default=1, ge=0)  # GRPO steps; 0: the supervised phase only (the SFT-only ablation)
    learning_rate: float = Field(default=5e-5, gt=0)
    beta: float = 0.0  # KL coefficient; the paper uses none
    temperature: float = 1.0
    max_completion_length: int | None = Field(default=None, gt=0)  # None: the task's answer budget
    max_grad_norm: float = 1.0
    dynamic_sampling_epsilon: float = DEFAULT_EPSILON
    # Learning curve: `curve_rows` validation rows probed (greedy) at the start and `curve_points` times in each phase.
    curve_rows: int = Field(default=16, ge=0)
    curve_points: int = Field(default=1, ge=0)
    replay_ratio: float = 0.5  # replayed earlier rows per new row when warm-starting
    save_steps: int = 1
    seed: int = 0

    @classmethod
    def for_budget(cls, budget: str, stage: str, **overrides):
        """The config of `stage` (srl, rlvr, rlvr_only, sft_only, persona) in a budget's recipe, with overrides."""

        fields = recipe(budget, stage)
        try:
            cls(**fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InputError(
                RECIPES / f"{budget}.yaml", f"{stage}." + ".".join(str(p) for p in err["loc"]), err["msg"]
            ) from exc
        return cls(**{**fields, **overrides})

    def uses_bf16(self) -> bool:
        if self.precision == "float32":
            return False
        supported = bf16_supported()
        if self.precision == "bfloat16" and not supported:
            raise RuntimeError("precision bfloat16 needs a GPU with bf16 or a CPU with AVX512-BF16/AMX; use auto")
        return supported


def recipe(budget: str, stage: str) -> dict:
    """The fields of one stage in `training/recipes/<budget>.yaml` (its `defaults`, then the stage's own)."""

    if budget not in BUDGETS:
        raise InputError(
            "SRL_FORGE_TRAINING_BUDGET", "value", f"unknown training budget {budget!r}; one of {', '.join(BUDGETS)}"
        )
    path = RECIPES / f"{budget}.yaml"
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
    if stage not in data:
        raise InputError(path, stage, f"the recipe has no {stage!r} section")
    fields = {**(data.get("defaults") or {}), **(data[stage] or {})}
    unknown = sorted(set(fields) - set(GRPOTrainingConfig.model_fields))
    if unknown:
        raise InputError(path, f"{stage}.{unknown[0]}", "not a training setting (see training/grpo_runner.py)")
    return fields


class GRPOJob(BaseModel):
    config: GRPOTrainingConfig
    train_data: str
    validation_data: str
    replay_data: str | None = None
    sft_data: str | None = None  # rows with `prompt` and `completion_text`; default: `Task.sft_text` of the train rows
    parent_adapter: str | None = None
    work_dir: str
    output_dir: str
    model_cache: str


class AdapterArtifact(StoredArtifact):
    """A trained LoRA adapter in the artifact store, with what it was trained from."""

    model_config = ConfigDict(frozen=True)
    species: str
    version: str  # the content hash of the adapter folder
    adapter_uri: str
    metrics_uri: str
    parent_version: str | None
    base_model: str
    dataset_uri: str
    dataset_version: str
    training_seconds: float | None = None  # the supervised phase and GRPO, probes excluded


@dataclass(frozen=True)
class Task:
    name: str
    reward_funcs: Sequence[Callable]
    reward_weights: Sequence[float]
    format_metric: str  # the logged reward mean that is the format rate
    score_metric: str  # the logged reward mean that is the task score
    grpo_columns: Callable[[dict], dict]  # dataset row -> GRPO record (prompt + reward columns)
    sft_text: Callable[[dict], str] | None  # dataset row -> expert assistant text (None: the job's sft_data rows)
    probe: Callable  # (model, tokenizer, rows) -> {"decision_accuracy", "format_rate", "predictions", ...}
    curve_rows: Callable[[list[dict], int, int], list[dict]]  # (validation rows, n, seed) -> the probed sample
    answer_tokens: int  # the answer budget (`srl_forge.policy`): GRPO's completion length unless the config sets one


def read_rows(path: str | None) -> list[dict]:
    if not path:
        return []
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def mix_replay(new_rows: list[dict], old_rows: list[dict], ratio: float, seed: int) -> list[dict]:
    """New rows plus a seeded sample of earlier rows (ratio per new row) not already among them."""
    new_ids = {r["row_id"] for r in new_rows}
    candidates = [r for r in old_rows if r["row_id"] not in new_ids]
    take = min(len(candidates), int(round(ratio * len(new_rows))))
    return new_rows + random.Random(seed).sample(candidates, take)


def is_main_process() -> bool:
    """The process that writes outputs: rank 0 of a torchrun launch (`training.distributed`), or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def sft_steps(rows: int, epochs: float, batch_size: int) -> int:
    return math.ceil(rows * epochs / batch_size) if rows and epochs > 0 else 0


def run_grpo_job(
    task: Task,
    job: GRPOJob,
    log: Callable[[str], None] = print,
    callbacks: Sequence = (),
    step_log: Callable[[str], None] | None = None,
) -> dict:
    """Run the job; `log` gets the milestones and the learning-curve probes, `step_log` (default: `log`) a
    line per training step."""
    # torch, TRL and the trainers built on them load when a job runs, not when its config is parsed: the
    # code location and the SageMaker launcher read configs and recipes without them.
    import torch
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, SFTConfig

    from training.dynamic_sampling import DynamicSamplingGRPOTrainer
    from training.learning_curve import LearningCurve, curve_png
    from training.sft import CompletionSFTTrainer
    from training.trainer_progress import show_progress

    config = job.config
    torch.manual_seed(config.seed)
    cuda = torch.cuda.is_available()
    bf16 = config.uses_bf16()
    num_generations = config.num_generations or (8 if cuda else 4)
    work, output = Path(job.work_dir), Path(job.output_dir)
    work.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)

    new_rows = read_rows(job.train_data)
    train_rows = mix_replay(new_rows, read_rows(job.replay_data), config.replay_ratio, config.seed)
    curve_sample = task.curve_rows(read_rows(job.validation_data), config.curve_rows, config.seed)
    if not train_rows:
        raise ValueError(f"{job.train_data}: no training rows")
    log(
        f"{task.name}: {len(new_rows)} new rows + {len(train_rows) - len(new_rows)} replayed, "
        f"{len(curve_sample)} validation rows probed, {'bf16' if bf16 else 'float32'}"
    )

    phase_seconds: dict[str, float] = {}  # where the job's time went: load, probes, SFT, GRPO
    clock = time.perf_counter()

    def phase_done(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phase_seconds[name] = round(phase_seconds.get(name, 0.0) + now - clock, 2)
        clock = now

    memory = PeakMemory().start()
    model_path = resolve_model(config.model, Path(job.model_cache))
    tokenizer = load_tokenizer(model_path)
    lora = lora_config(config.lora_r, config.lora_alpha, config.lora_dropout)
    sft_adapter = work / "sft_adapter"
    policy = load_policy(
        model_path, str(sft_adapter) if sft_adapter.exists() else job.parent_adapter, lora, config.quantization
    )
    phase_done("model_load")

    def autocast():
        return torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=bf16)

    def probe(model, tok, rows):
        with autocast():
            return task.probe(model, tok, rows)

    curve = LearningCurve(probe, tokenizer, curve_sample, config.curve_points, log, task.name)
    curve.probe(policy, "start", 0)
    phase_done("start_probe")

    sft_rows = (
        [{"prompt": r["prompt"], "completion_text": r["completion_text"]} for r in read_rows(job.sft_data)]
        if job.sft_data
        else [{"prompt": r["prompt"], "completion_text": task.sft_text(r)} for r in train_rows]
        if task.sft_text
        else []
    )
    steps = sft_steps(len(sft_rows), config.sft_epochs, config.sft_batch_size)
    sft = {"ran": False, "steps": 0, "rows": len(sft_rows), "epochs": config.sft_epochs}
    if sft_adapter.exists():
        sft.update(ran=True, resumed=True)
    elif steps:
        log(
            f"{task.name} supervised phase: {steps} steps of {config.sft_batch_size} over {len(sft_rows)} expert rows "
            f"({config.sft_epochs:g} epochs)"
        )
        data = Dataset.from_list(
            [
                {"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["completion_text"]}]}
                for r in sft_rows
            ]
        )
        trainer = CompletionSFTTrainer(
            model=policy,
            train_dataset=data,
            processing_class=tokenizer,
            args=SFTConfig(
                output_dir=str(work / "sft"),
                max_steps=steps,
                per_device_train_batch_size=config.sft_batch_size,
                learning_rate=config.sft_learning_rate,
                lr_scheduler_type="linear",
                warmup_steps=int(config.sft_warmup_ratio * steps),
                use_cpu=not cuda,
                bf16=bf16,
                gradient_checkpointing=False,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                max_length=1024,
                seed=config.seed,
                completion_only_loss=True,
            ),
            callbacks=[curve.callback("sft", steps)],
        )
        show_progress(trainer, f"{task.name} supervised", step_log or log).train()
        policy = trainer.model
        if is_main_process():
            policy.save_pretrained(str(sft_adapter))  # a finished supervised phase is not redone on resume
        sft.update(
            ran=True,
            steps=steps,
            final_loss=next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
        )
        phase_done("sft")

    grpo_steps, resume, log_history = 0, None, []
    if config.max_steps > 0:
        args = GRPOConfig(
            output_dir=str(work / "grpo"),
            max_steps=config.max_steps,
            per_device_train_batch_size=config.prompts_per_step * num_generations,
            num_generations=num_generations,
            loss_type="grpo",
            beta=config.beta,
            temperature=config.temperature,
            max_completion_length=config.max_completion_length or task.answer_tokens,
            learning_rate=config.learning_rate,
            max_grad_norm=config.max_grad_norm,
            reward_weights=list(task.reward_weights),
            use_cpu=not cuda,
            bf16=bf16,
            gradient_checkpointing=False,
            logging_steps=1,
            save_strategy="steps",
            save_steps=config.save_steps,
            report_to="none",
            seed=config.seed,
            disable_dropout=True,
        )
        trainer = DynamicSamplingGRPOTrainer(
            model=policy,
            reward_funcs=list(task.reward_funcs),
            args=args,
            train_dataset=Dataset.from_list([task.grpo_columns(r) for r in train_rows]),
            processing_class=tokenizer,
            callbacks=[curve.callback("grpo", config.max_steps), *callbacks],
            dynamic_sampling_epsilon=config.dynamic_sampling_epsilon,
        )
        resume = get_last_checkpoint(str(work / "grpo")) if (work / "grpo").exists() else None
        if resume:
            log(f"resuming GRPO from {resume}")
        phase_done("grpo_setup")
        show_progress(trainer, f"{task.name} GRPO", step_log or log).train(resume_from_checkpoint=resume)
        phase_done("grpo")
        policy, grpo_steps, log_history = trainer.model, trainer.state.global_step, trainer.state.log_history
    in_training_probes = curve.probe_seconds - phase_seconds["start_probe"]
    phase_seconds["probes"] = round(curve.probe_seconds, 2)
    training_seconds = sum(phase_seconds.get(k, 0.0) for k in ("sft", "grpo_setup", "grpo")) - in_training_probes

    steps_table = [
        {
            "step": e.get("step"),
            "reward_mean": e.get("reward"),
            "reward_std": e.get("reward_std"),
            "format_rate": e.get(task.format_metric),
            "score_mean": e.get(task.score_metric),
            "kept_fraction": e.get("dynamic_sampling/kept_fraction"),
            "zero_std_share": e.get("frac_reward_zero_std"),
            "loss": e.get("loss"),
            "tokens_per_s": e.get("tokens_per_s"),
        }
        for e in log_history
        if "reward" in e
    ]
    points = curve.dump()
    metrics = {
        "task": task.name,
        "base_model": config.model,
        "resolved_model": model_path,
        "parent_adapter": job.parent_adapter,
        "train_rows": len(train_rows),
        "new_rows": len(new_rows),
        "replayed_rows": len(train_rows) - len(new_rows),
        "learning_curve": points,
        "validation_before": points[0] if points else None,
        "validation_after": points[-1] if len(points) > 1 else None,
        "sft": sft,
        "grpo_steps": grpo_steps,
        "resumed_from": resume,
        "num_generations": num_generations,
        "steps": steps_table,
        "phase_seconds": phase_seconds,
        "training_seconds": round(training_seconds, 1),
        "precision": "bf16" if bf16 else "float32",
        "quantization": config.quantization,  # of the base the LoRA trained on
        "peak_rss_mib": memory.stop(),  # this job's, from loading the model to the end of GRPO
        "config": config.model_dump(),
    }
    if not is_main_process():  # under torchrun every process trained the same adapter; one writes it
        return metrics
    adapter_dir = output / "adapter"
    policy.save_pretrained(str(adapter_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(adapter_dir))
    (output / "reward_curve.png").write_bytes(reward_curve_png(steps_table, f"{task.name} GRPO"))
    (output / "learning_curve.png").write_bytes(curve_png(points, f"{task.name}: validation through training"))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    (adapter_dir / "README.md").write_text(model_card(metrics, job))
    return metrics


def model_card(metrics: dict, job: GRPOJob) -> str:
    """The adapter's model card (Hugging Face format): lineage, phases and its learning curve."""
    from huggingface_hub import ModelCard, ModelCardData

    points = metrics["learning_curve"]
    curve = markdown_table(
        ["phase", "step", "seconds", "decision accuracy", "format"],
        [
            [p["phase"], p["step"], f"{p['seconds']:.0f}", f"{p['decision_accuracy']:.2f}", f"{p['format_rate']:.2f}"]
            for p in points
        ],
    )
    sft = metrics["sft"]
    supervised = (
        f"{sft['steps']} steps over {sft['rows']} expert rows ({sft['epochs']:g} epochs)" if sft["ran"] else "none"
    )
    data = ModelCardData(
        base_model=metrics["base_model"],
        library_name="peft",
        tags=["srl-forge", metrics["task"].lower(), "grpo", "lora"],
    )
    card = ModelCard(f"""---
{data.to_yaml()}
---
# {metrics["task"]} adapter

- Base model: `{metrics["base_model"]}` ({metrics["precision"]} training, base quantization
  {metrics["quantization"]}; peak memory {metrics["peak_rss_mib"]:.0f} MiB)
- Parent adapter: `{metrics["parent_adapter"] or "none (fresh LoRA)"}`
- Training data: `{job.train_data}` ({metrics["new_rows"]} new rows, {metrics["replayed_rows"]} replayed)
- Supervised phase: {supervised}
- GRPO steps: {metrics["grpo_steps"]}, {metrics["num_generations"]} rollouts per prompt, loss `grpo`,
  beta {job.config.beta}, dynamic-sampling epsilon {job.config.dynamic_sampling_epsilon}

Validation (`{job.validation_data}`, {points[0]["rows"] if points else 0} rows, greedy) through training:

{curve}
""")
    return str(card)


def job_cli(
    job_cls: type[GRPOJob], run: Callable[[GRPOJob], dict], description: str, argv: list[str] | None = None
) -> int:
    """`python -m training.<srl|rlvr> --job job.json`: the entry point a remote (SageMaker) job runs."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", required=True, help=f"job JSON file (see {job_cls.__name__})")
    args = parser.parse_args(argv)
    metrics = run(job_cls.model_validate_json(Path(args.job).read_text()))
    print(json.dumps({k: metrics[k] for k in ("grpo_steps", "sft", "validation_after")}, default=str))
    return 0
