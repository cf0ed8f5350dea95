"""The GRPO job both SRL and RLVR run: load the policy (fresh LoRA or a parent adapter), measure the
validation sample, warm the format up with a short SFT pass when needed, train with the
dynamic-sampling GRPO trainer (checkpointed, resumable), measure again, save adapter, model card,
metrics and reward curve. A `Task` supplies what differs: rewards, dataset columns, warm-up text and
the validation metric."""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from srl_forge.artifacts import StoredArtifact
from training.model_loading import DEFAULT_POLICY, Quantization

DEFAULT_EPSILON = 1e-4  # dynamic sampling: rewards in a group this close are "all alike"


class GRPOTrainingConfig(BaseModel):
    """Hyper-parameters shared by SRL and RLVR."""

    model_config = ConfigDict(frozen=True)
    model: str = DEFAULT_POLICY
    quantization: Quantization = "none"
    lora_r: int = 16
    lora_alpha: int = 32
    # No LoRA dropout on the CPU budgets: a few dozen updates cannot over-fit, and the dropout masks cost a
    # fifth of every CPU training step (measured: 9.3 s vs 6.9 s forward+backward, 4 x 220 tokens). `full`: 0.05.
    lora_dropout: float = 0.0
    num_generations: int | None = None  # None: 8 on a GPU, 4 on CPU
    prompts_per_step: int = 2
    max_steps: int = 2
    learning_rate: float = 5e-5  # LoRA on CPU for a handful of steps; `full` uses the paper's 5e-7
    beta: float = 0.0  # KL coefficient; the paper uses none
    temperature: float = 1.0
    max_completion_length: int = 96  # expert steps with their thought are 40-70 tokens
    max_grad_norm: float = 1.0
    dynamic_sampling_epsilon: float = DEFAULT_EPSILON
    warmup_sft_steps: int = 20  # format warm-up (SFT) when the format rate is below the threshold
    warmup_batch_size: int = 4
    warmup_learning_rate: float = 1e-3  # measured: 3e-4 for 16 steps left SmolLM2-135M at 0% format
    format_rate_threshold: float = 0.5
    # Validation sample, greedy, before and after training. 0 (quick): not measured — the evaluation asset scores
    # every adapter on held-out encounters next to the base model, and 4 rows told nothing for ~60 s a job;
    # without a probe the format warm-up always runs.
    validation_rows: int = 0
    replay_ratio: float = 0.5  # replayed earlier rows per new row when warm-starting
    save_steps: int = 1
    seed: int = 0

    # Budgets. `quick`: the field defaults (the demo and CI: minutes on 2 CPU cores). `standard`: about an
    # hour per species on 2 CPU cores for all three adapters (bench-learning). `full`: a GPU.
    # Learning rates are for LoRA, not the paper's full fine-tuning (5e-7): a LoRA adapter starts at zero
    # and only moves a rank-16 slice, so it needs 10-100x larger steps to move at all within tens of
    # steps (measured: 5e-7 left the CPU runs' rewards flat; 3e-4 SFT for 16 steps left SmolLM2 at 0% format).
    # SRL's warm-up keeps the quick budget's measured setting (1e-3, two rows a step) with more steps: a first
    # standard run with 16 steps x 4 rows at 5e-4 left SmolLM2 at 0% SRL format, so every GRPO group scored -1.
    STANDARD: ClassVar[dict] = dict(max_steps=6, learning_rate=1e-4, warmup_sft_steps=28, warmup_learning_rate=1e-3,
                                    warmup_batch_size=2, validation_rows=12, save_steps=2)
    FULL: ClassVar[dict] = dict(lora_dropout=0.05, num_generations=8, prompts_per_step=8, max_steps=500, learning_rate=2e-5,
                                max_completion_length=512, warmup_sft_steps=200, warmup_learning_rate=2e-4, warmup_batch_size=8,
                                validation_rows=256, save_steps=25)
    BUDGETS: ClassVar[tuple[str, ...]] = ("quick", "standard", "full")

    @classmethod
    def for_budget(cls, budget: str, **overrides):
        if budget not in cls.BUDGETS:
            raise ValueError(f"unknown training budget {budget!r} ({', '.join(cls.BUDGETS)})")
        preset = {"quick": {}, "standard": cls.STANDARD, "full": cls.FULL}[budget]
        return cls(**{**preset, **overrides})


class GRPOJob(BaseModel):
    config: GRPOTrainingConfig
    train_data: str
    validation_data: str
    replay_data: str | None = None
    warmup_data: str | None = None  # rows with `prompt` and `completion_text`; default: from the train rows
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


@dataclass(frozen=True)
class Task:
    name: str
    reward_funcs: Sequence[Callable]
    reward_weights: Sequence[float]
    format_metric: str  # the logged reward mean that is the format rate
    score_metric: str  # the logged reward mean that is the task score
    grpo_columns: Callable[[dict], dict]  # dataset row -> GRPO record (prompt + reward columns)
    warmup_text: Callable[[dict], str] | None  # dataset row -> warm-up assistant text (None: job.warmup_data)
    validate: Callable  # (model, tokenizer, rows, max_new_tokens, progress) -> {"score", "format_rate", ...}


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


def run_grpo_job(task: Task, job: GRPOJob, log: Callable[[str], None] = print, callbacks: Sequence = (),
                 step_log: Callable[[str], None] | None = None) -> dict:
    """Run the job; `log` gets the milestones, `step_log` (default: `log`) a line per training step."""
    import torch
    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, SFTConfig, SFTTrainer

    from training.dynamic_sampling import DynamicSamplingGRPOTrainer
    from training.model_loading import load_policy, load_tokenizer, lora_config, resolve_model
    from training.plots import reward_curve_png
    from training.trainer_progress import show_progress

    config = job.config
    torch.manual_seed(config.seed)
    cuda = torch.cuda.is_available()
    num_generations = config.num_generations or (8 if cuda else 4)
    work, output = Path(job.work_dir), Path(job.output_dir)
    work.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)

    new_rows = read_rows(job.train_data)
    train_rows = mix_replay(new_rows, read_rows(job.replay_data), config.replay_ratio, config.seed)
    all_val = read_rows(job.validation_data)
    val_rows = random.Random(config.seed).sample(all_val, min(len(all_val), config.validation_rows))
    if not train_rows:
        raise ValueError(f"{job.train_data}: no training rows")
    log(f"{task.name}: {len(new_rows)} new rows + {len(train_rows) - len(new_rows)} replayed, "
        f"{len(val_rows)} validation rows")

    phase_seconds: dict[str, float] = {}  # where the job's time went: load, validation, warm-up, GRPO
    clock = time.perf_counter()

    def phase_done(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phase_seconds[name] = round(phase_seconds.get(name, 0.0) + now - clock, 2)
        clock = now

    model_path = resolve_model(config.model, Path(job.model_cache))
    tokenizer = load_tokenizer(model_path)
    lora = lora_config(config.lora_r, config.lora_alpha, config.lora_dropout)
    sft_adapter = work / "sft_adapter"
    policy = load_policy(model_path, str(sft_adapter) if sft_adapter.exists() else job.parent_adapter, lora,
                         config.quantization)

    def progress(label):
        return lambda done, total: log(f"{label}: {done}/{total}")

    def validate(label):
        if not val_rows:
            return None
        result = task.validate(policy, tokenizer, val_rows, config.max_completion_length, progress(f"validation {label}"))
        log(f"validation {label}: score {result['score']:.3f}, format rate {result['format_rate']:.2f}")
        return result

    phase_done("model_load")
    before = validate("before")
    phase_done("validation")
    probe = before["format_rate"] if before else None
    warmup = {"ran": False, "format_rate_probe": probe, "steps": 0}
    if sft_adapter.exists():
        warmup.update(ran=True, resumed=True)
    elif (probe is None or probe < config.format_rate_threshold) and config.warmup_sft_steps > 0:
        log("SFT format warm-up" + (f": format rate {probe:.2f} < {config.format_rate_threshold}" if before else ""))
        warmup_rows = ([{"prompt": r["prompt"], "completion_text": r["completion_text"]} for r in read_rows(job.warmup_data)]
                       if job.warmup_data else
                       [{"prompt": r["prompt"], "completion_text": task.warmup_text(r)} for r in train_rows])
        sft_data = Dataset.from_list([
            {"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["completion_text"]}]}
            for r in warmup_rows])
        sft = SFTTrainer(
            model=policy, train_dataset=sft_data, processing_class=tokenizer,
            args=SFTConfig(output_dir=str(work / "sft"), max_steps=config.warmup_sft_steps,
                           per_device_train_batch_size=config.warmup_batch_size,
                           learning_rate=config.warmup_learning_rate, use_cpu=not cuda, bf16=cuda,
                           gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
                           max_length=1024, seed=config.seed, completion_only_loss=True),
        )
        show_progress(sft, f"{task.name} format warm-up", step_log or log).train()
        phase_done("format_warmup")
        policy = sft.model
        if is_main_process():
            policy.save_pretrained(str(sft_adapter))  # a finished warm-up is not redone on resume
        warmup.update(ran=True, steps=config.warmup_sft_steps,
                      final_loss=next((h["loss"] for h in reversed(sft.state.log_history) if "loss" in h), None))

    args = GRPOConfig(
        output_dir=str(work / "grpo"), max_steps=config.max_steps,
        per_device_train_batch_size=config.prompts_per_step * num_generations, num_generations=num_generations,
        loss_type="grpo", beta=config.beta, temperature=config.temperature,
        max_completion_length=config.max_completion_length, learning_rate=config.learning_rate,
        max_grad_norm=config.max_grad_norm, reward_weights=list(task.reward_weights), use_cpu=not cuda, bf16=cuda,
        gradient_checkpointing=False, logging_steps=1, save_strategy="steps", save_steps=config.save_steps,
        report_to="none", seed=config.seed, disable_dropout=True,
    )
    trainer = DynamicSamplingGRPOTrainer(
        model=policy, reward_funcs=list(task.reward_funcs), args=args,
        train_dataset=Dataset.from_list([task.grpo_columns(r) for r in train_rows]),
        processing_class=tokenizer, callbacks=list(callbacks),
        dynamic_sampling_epsilon=config.dynamic_sampling_epsilon,
    )
    resume = get_last_checkpoint(str(work / "grpo")) if (work / "grpo").exists() else None
    if resume:
        log(f"resuming GRPO from {resume}")
    phase_done("grpo_setup")
    show_progress(trainer, f"{task.name} GRPO", step_log or log).train(resume_from_checkpoint=resume)
    phase_done("grpo")
    policy = trainer.model

    after = validate("after")
    phase_done("validation")

    steps = [{
        "step": e.get("step"), "reward_mean": e.get("reward"), "reward_std": e.get("reward_std"),
        "format_rate": e.get(task.format_metric), "score_mean": e.get(task.score_metric),
        "kept_fraction": e.get("dynamic_sampling/kept_fraction"), "loss": e.get("loss"),
        "tokens_per_s": e.get("tokens_per_s"),
    } for e in trainer.state.log_history if "reward" in e]
    metrics = {
        "task": task.name, "base_model": config.model, "resolved_model": model_path,
        "parent_adapter": job.parent_adapter, "train_rows": len(train_rows), "new_rows": len(new_rows),
        "replayed_rows": len(train_rows) - len(new_rows), "validation_before": before, "validation_after": after,
        "warmup": warmup, "grpo_steps": trainer.state.global_step, "resumed_from": resume,
        "num_generations": num_generations, "steps": steps, "phase_seconds": phase_seconds,
        "config": config.model_dump(),
    }
    if not is_main_process():  # under torchrun every process trained the same adapter; one writes it
        return metrics
    adapter_dir = output / "adapter"
    policy.save_pretrained(str(adapter_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(adapter_dir))
    (output / "reward_curve.png").write_bytes(reward_curve_png(steps, f"{task.name} GRPO"))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    (adapter_dir / "README.md").write_text(model_card(metrics, job))
    return metrics


def model_card(metrics: dict, job: GRPOJob) -> str:
    before, after = metrics["validation_before"], metrics["validation_after"]
    probe = metrics["warmup"]["format_rate_probe"]
    if before and after:
        validation = f"""| validation | score | format rate |
|---|---|---|
| before | {before['score']:.3f} | {before['format_rate']:.2f} |
| after | {after['score']:.3f} | {after['format_rate']:.2f} |
"""
    else:
        validation = "Validation: not measured in the job (validation_rows 0); the evaluation asset scores this adapter.\n"
    return f"""---
base_model: {metrics['base_model']}
library_name: peft
tags: [srl-forge, {metrics['task'].lower()}, grpo, lora]
---
# {metrics['task']} adapter

- Base model: `{metrics['base_model']}`
- Parent adapter: `{metrics['parent_adapter'] or 'none (fresh LoRA)'}`
- Training data: `{job.train_data}` ({metrics['new_rows']} new rows, {metrics['replayed_rows']} replayed)
- Validation data: `{job.validation_data}`
- GRPO steps: {metrics['grpo_steps']}, {metrics['num_generations']} rollouts per prompt, loss `grpo`,
  beta {job.config.beta}, dynamic-sampling epsilon {job.config.dynamic_sampling_epsilon}
- Format warm-up (SFT): {'ran' if metrics['warmup']['ran'] else 'skipped'}{'' if probe is None else f' (probe format rate {probe:.2f})'}

{validation}"""


def job_cli(job_cls: type[GRPOJob], run: Callable[[GRPOJob], dict], description: str,
            argv: list[str] | None = None) -> int:
    """`python -m training.<srl|rlvr> --job job.json`: the entry point a remote (SageMaker) job runs."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", required=True, help=f"job JSON file (see {job_cls.__name__})")
    args = parser.parse_args(argv)
    metrics = run(job_cls.model_validate_json(Path(args.job).read_text()))
    print(json.dumps({k: metrics[k] for k in ("grpo_steps", "validation_before", "validation_after")}, default=str))
    return 0
