"""SRL training: step-wise GRPO with the similarity reward on a LoRA adapter.

Entry point (the in-process launcher calls `run_srl_job`; a SageMaker job runs the same module):
    python -m training.srl --job job.json

The job file holds the config, the parquet paths of the train / validation / replay rows, the
parent adapter to warm-start from, a work folder (checkpoints; resumable) and an output folder
(adapter, model card, metrics.json, reward_curve.png).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from srl_forge.hashing import content_hash
from training.dynamic_sampling import DEFAULT_EPSILON
from training.model_loading import DEFAULT_POLICY, Quantization

Budget = Literal["quick", "full"]


class SRLConfig(BaseModel):
    """Hyper-parameters. `quick` fits a 2-core CPU in minutes; `full` follows the paper on a GPU."""

    model_config = ConfigDict(frozen=True)
    model: str = DEFAULT_POLICY
    quantization: Quantization = "none"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    num_generations: int | None = None  # None: 8 on a GPU, 4 on CPU
    prompts_per_step: int = 2
    max_steps: int = 3
    learning_rate: float = 5e-5  # LoRA on CPU for a handful of steps; `full` uses the paper's 5e-7
    beta: float = 0.0  # KL coefficient; the paper uses none
    temperature: float = 1.0
    max_completion_length: int = 96  # expert steps with their thought are 40-70 tokens
    max_grad_norm: float = 1.0
    dynamic_sampling_epsilon: float = DEFAULT_EPSILON
    warmup_sft_steps: int = 24  # format warm-up (SFT) when the format rate is below the threshold
    warmup_batch_size: int = 4
    warmup_learning_rate: float = 1e-3  # measured: 3e-4 for 16 steps left SmolLM2-135M at 0% format
    format_rate_threshold: float = 0.5
    validation_rows: int = 12  # validation sample, measured before and after
    replay_ratio: float = 0.5  # replayed earlier rows per new row when warm-starting
    save_steps: int = 1
    seed: int = 0

    @classmethod
    def for_budget(cls, budget: Budget, **overrides) -> "SRLConfig":
        if budget == "full":
            base = dict(num_generations=8, prompts_per_step=8, max_steps=500, learning_rate=5e-7,
                        max_completion_length=512, warmup_sft_steps=200, validation_rows=256, save_steps=25)
        else:
            base = {}
        return cls(**{**base, **overrides})


class SRLJob(BaseModel):
    config: SRLConfig
    train_data: str
    validation_data: str
    replay_data: str | None = None
    parent_adapter: str | None = None
    work_dir: str
    output_dir: str
    model_cache: str


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


def _device_defaults(config: SRLConfig) -> tuple[int, bool]:
    import torch

    cuda = torch.cuda.is_available()
    return (config.num_generations or (8 if cuda else 4)), cuda


def _steps_from_history(history: Sequence[dict]) -> list[dict]:
    steps = []
    for entry in history:
        if "reward" not in entry:
            continue
        steps.append({
            "step": entry.get("step"),
            "reward_mean": entry.get("reward"),
            "reward_std": entry.get("reward_std"),
            "format_rate": entry.get("rewards/step_format_reward/mean"),
            "similarity_mean": entry.get("rewards/step_similarity_reward/mean"),
            "kept_fraction": entry.get("dynamic_sampling/kept_fraction"),
            "loss": entry.get("loss"),
            "tokens_per_s": entry.get("tokens_per_s"),
        })
    return steps


def run_srl_job(job: SRLJob, log: Callable[[str], None] = print, callbacks: Sequence = ()) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOConfig, SFTConfig, SFTTrainer

    from training.dynamic_sampling import DynamicSamplingGRPOTrainer
    from training.model_loading import load_policy, load_tokenizer, lora_config, resolve_model
    from training.plots import reward_curve_png
    from training.policy_eval import srl_validation
    from training.rewards import step_format_reward, step_similarity_reward

    config = job.config
    torch.manual_seed(config.seed)
    num_generations, cuda = _device_defaults(config)
    work, output = Path(job.work_dir), Path(job.output_dir)
    work.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)

    new_rows = read_rows(job.train_data)
    train_rows = mix_replay(new_rows, read_rows(job.replay_data), config.replay_ratio, config.seed)
    val_rows = random.Random(config.seed).sample(v := read_rows(job.validation_data), min(len(v), config.validation_rows))
    if not train_rows:
        raise ValueError(f"{job.train_data}: no training rows")
    log(f"SRL: {len(new_rows)} new rows + {len(train_rows) - len(new_rows)} replayed, {len(val_rows)} validation rows")

    model_path = resolve_model(config.model, Path(job.model_cache))
    tokenizer = load_tokenizer(model_path)
    lora = lora_config(config.lora_r, config.lora_alpha, config.lora_dropout)
    sft_adapter = work / "sft_adapter"
    policy = load_policy(model_path, str(sft_adapter) if sft_adapter.exists() else job.parent_adapter, lora,
                         config.quantization)

    def progress(label):
        return lambda done, total: log(f"{label}: {done}/{total}")

    before = srl_validation(policy, tokenizer, val_rows, config.max_completion_length,
                            progress=progress("validation before"))
    log(f"validation before: similarity {before['step_similarity']:.3f}, format rate {before['format_rate']:.2f}")

    warmup = {"ran": False, "format_rate_probe": before["format_rate"], "steps": 0}
    if sft_adapter.exists():
        warmup.update(ran=True, resumed=True)
    elif before["format_rate"] < config.format_rate_threshold and config.warmup_sft_steps > 0:
        log(f"format rate {before['format_rate']:.2f} < {config.format_rate_threshold}: SFT warm-up")
        sft_data = Dataset.from_list([
            {"prompt": r["prompt"],
             "completion": [{"role": "assistant", "content": f"<think>{r['expert_thought']}</think>\n{r['expert_step']}"}]}
            for r in train_rows])
        sft = SFTTrainer(
            model=policy, train_dataset=sft_data, processing_class=tokenizer,
            args=SFTConfig(output_dir=str(work / "sft"), max_steps=config.warmup_sft_steps,
                           per_device_train_batch_size=config.warmup_batch_size,
                           learning_rate=config.warmup_learning_rate, use_cpu=not cuda, bf16=cuda,
                           gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
                           max_length=768, seed=config.seed, completion_only_loss=True),
        )
        sft.train()
        policy = sft.model
        policy.save_pretrained(str(sft_adapter))  # a finished warm-up is not redone on resume
        warmup.update(ran=True, steps=config.warmup_sft_steps,
                      final_loss=next((h["loss"] for h in reversed(sft.state.log_history) if "loss" in h), None))

    class StepLog(TrainerCallback):
        def __init__(self):
            self.started = time.perf_counter()
            self.tokens = 0.0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                elapsed = time.perf_counter() - self.started
                tokens = logs.get("num_tokens", 0.0)
                logs["tokens_per_s"] = (tokens - self.tokens) / elapsed if elapsed > 0 else 0.0
                self.started, self.tokens = time.perf_counter(), tokens
                log(f"GRPO step {state.global_step}/{state.max_steps}: reward {logs['reward']:.3f}, "
                    f"kept {logs.get('dynamic_sampling/kept_fraction', 1.0):.2f}")

    grpo_data = Dataset.from_list([{"prompt": r["prompt"], "expert_action": r["expert_action"]} for r in train_rows])
    args = GRPOConfig(
        output_dir=str(work / "grpo"), max_steps=config.max_steps,
        per_device_train_batch_size=config.prompts_per_step * num_generations, num_generations=num_generations,
        loss_type="grpo", beta=config.beta, temperature=config.temperature,
        max_completion_length=config.max_completion_length, learning_rate=config.learning_rate,
        max_grad_norm=config.max_grad_norm, reward_weights=[1.0, 0.0], use_cpu=not cuda, bf16=cuda,
        gradient_checkpointing=False, logging_steps=1, save_strategy="steps", save_steps=config.save_steps,
        report_to="none", seed=config.seed, disable_dropout=True,
    )
    trainer = DynamicSamplingGRPOTrainer(
        model=policy, reward_funcs=[step_similarity_reward, step_format_reward], args=args,
        train_dataset=grpo_data, processing_class=tokenizer, callbacks=[StepLog(), *callbacks],
        dynamic_sampling_epsilon=config.dynamic_sampling_epsilon,
    )
    resume = get_last_checkpoint(str(work / "grpo")) if (work / "grpo").exists() else None
    if resume:
        log(f"resuming GRPO from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    policy = trainer.model

    after = srl_validation(policy, tokenizer, val_rows, config.max_completion_length,
                           progress=progress("validation after"))
    log(f"validation after: similarity {after['step_similarity']:.3f}, format rate {after['format_rate']:.2f}")

    steps = _steps_from_history(trainer.state.log_history)
    metrics = {
        "base_model": config.model, "resolved_model": model_path, "parent_adapter": job.parent_adapter,
        "train_rows": len(train_rows), "new_rows": len(new_rows), "replayed_rows": len(train_rows) - len(new_rows),
        "validation_before": before, "validation_after": after, "warmup": warmup,
        "grpo_steps": trainer.state.global_step, "resumed_from": resume, "num_generations": num_generations,
        "steps": steps, "config": config.model_dump(),
    }
    adapter_dir = output / "adapter"
    policy.save_pretrained(str(adapter_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(adapter_dir))
    (output / "reward_curve.png").write_bytes(reward_curve_png(steps, "SRL step-wise GRPO"))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    (adapter_dir / "README.md").write_text(model_card(metrics, job))
    return metrics


def model_card(metrics: dict, job: SRLJob) -> str:
    before, after = metrics["validation_before"], metrics["validation_after"]
    return f"""---
base_model: {metrics['base_model']}
library_name: peft
tags: [srl-forge, srl, grpo, lora]
---
# SRL adapter

- Base model: `{metrics['base_model']}`
- Parent adapter: `{metrics['parent_adapter'] or 'none (fresh LoRA)'}`
- Training data: `{job.train_data}` ({metrics['new_rows']} new rows, {metrics['replayed_rows']} replayed)
- Validation data: `{job.validation_data}`
- GRPO steps: {metrics['grpo_steps']}, {metrics['num_generations']} rollouts per prompt, loss `grpo`,
  beta {job.config.beta}, dynamic-sampling epsilon {job.config.dynamic_sampling_epsilon}
- Format warm-up (SFT): {'ran' if metrics['warmup']['ran'] else 'skipped'} (probe format rate {metrics['warmup']['format_rate_probe']:.2f})

| validation | step similarity | format rate |
|---|---|---|
| before | {before['step_similarity']:.3f} | {before['format_rate']:.2f} |
| after | {after['step_similarity']:.3f} | {after['format_rate']:.2f} |
"""


def job_fingerprint(job: SRLJob, data_hashes: dict) -> str:
    return content_hash({"config": job.config, "data": data_hashes, "parent": job.parent_adapter})[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", required=True, help="job JSON file (see SRLJob)")
    args = parser.parse_args(argv)
    job = SRLJob.model_validate_json(Path(args.job).read_text())
    metrics = run_srl_job(job)
    print(json.dumps({k: metrics[k] for k in ("grpo_steps", "validation_before", "validation_after")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
