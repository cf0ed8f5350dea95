"""How fast the policy trains and answers on this machine: `python -m bench.training_speed [--species vampire]`.

A supervised step of the standard recipe (LoRA r16 on SmolLM2-135M, batch 8 of the species' expert answers, the
RLVR stage's rows) timed several ways: TRL's `SFTTrainer` loss (logits at every position) against the project's
completion-only logits (`training/sft.py`); float32 against bf16 autocast (only where the CPU has bf16 natively:
emulated bf16 is slower than float32, so it is not a setting there); eager against `torch.compile` (inductor), compiled
twice: from a cold cache, as a run's first job, and again with the kernels cached, as its later jobs.
Then greedy answers (batch 16, the decision budget) in float32 and, where native, bf16. Seconds per step are
the median of the timed steps after the warm-up ones (compilation happens in those); the warm-up's extra seconds
are reported beside them, since a job pays them once.

Written to `bench/results/sweep-precision.{json,md}`, the file `training/sft.py` and `training/grpo_runner.py`
cite for their choices. A different machine overwrites it: the machine line says which one measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from bench.machine import commit, machine
from bench.report import RESULTS
from bench.sweep import build_data
from srl_assets.training_assets import expert_answers
from srl_forge.artifacts import write_atomically
from srl_forge.policy import DECISION_TOKENS
from srl_forge.tables import markdown_table
from training.grpo_runner import GRPOTrainingConfig
from training.memory import PeakMemory
from training.model_loading import bf16_supported, load_policy, load_tokenizer, lora_config, resolve_model
from training.policy_eval import generate
from training.sft import CompletionSFTTrainer

STEM = RESULTS / "sweep-precision"


@dataclass(frozen=True)
class StepSetting:
    name: str
    completion_logits: bool
    bf16: bool
    compiled: bool


COMPILE_MODES = {"": False, ", torch.compile": True, ", torch.compile again (inductor's cache warm)": True}


def step_settings(native_bf16: bool) -> list[StepSetting]:
    """Compiled twice: the first job of a run compiles from a cold cache, the ones after it find the kernels."""
    precisions = [False, True] if native_bf16 else [False]
    return [StepSetting("TRL loss, float32", completion_logits=False, bf16=False, compiled=False)] + [
        StepSetting(
            f"completion logits, {'bf16' if bf16 else 'float32'}{mode}",
            completion_logits=True,
            bf16=bf16,
            compiled=compiled,
        )
        for bf16 in precisions
        for mode, compiled in COMPILE_MODES.items()
    ]


class StepClock(TrainerCallback):
    def __init__(self):
        self.ends: list[float] = []
        self.started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def durations(self) -> list[float]:
        starts = [self.started, *self.ends[:-1]]
        return [end - start for start, end in zip(starts, self.ends, strict=True)]


def mean_tokens_per_row(rows: list[dict], tokenizer) -> float:
    """Prompt (chat template) plus completion tokens of a supervised row, on average."""
    return statistics.mean(
        len(tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False))
        + len(tokenizer(r["completion_text"])["input_ids"])
        for r in rows
    )


def time_supervised_steps(
    setting: StepSetting,
    rows: list[dict],
    tokens_per_row: float,
    model_path: str,
    config: GRPOTrainingConfig,
    warmup: int,
    steps: int,
    work: Path,
) -> dict:
    tokenizer = load_tokenizer(model_path)
    policy = load_policy(model_path, None, lora_config(config.lora_r, config.lora_alpha, config.lora_dropout))
    data = Dataset.from_list(
        [{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["completion_text"]}]} for r in rows]
    )
    clock, memory = StepClock(), PeakMemory().start()
    trainer_class = CompletionSFTTrainer if setting.completion_logits else SFTTrainer
    trainer = trainer_class(
        model=policy,
        train_dataset=data,
        processing_class=tokenizer,
        args=SFTConfig(
            output_dir=str(work / "sft"),
            max_steps=warmup + steps,
            per_device_train_batch_size=config.sft_batch_size,
            learning_rate=config.sft_learning_rate,
            use_cpu=not torch.cuda.is_available(),
            bf16=setting.bf16,
            torch_compile=setting.compiled,
            gradient_checkpointing=False,
            save_strategy="no",
            logging_steps=1,
            report_to="none",
            disable_tqdm=True,
            max_length=1024,
            seed=config.seed,
            completion_only_loss=True,
        ),
        callbacks=[clock],
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    durations = clock.durations()
    timed = durations[warmup:]
    per_step = statistics.median(timed)
    return {
        "setting": setting.name,
        "completion_logits": setting.completion_logits,
        "bf16": setting.bf16,
        "compiled": setting.compiled,
        "warmup_steps": warmup,
        "timed_steps": len(timed),
        "seconds_per_step": round(per_step, 2),
        "seconds_per_step_spread": [round(min(timed), 2), round(max(timed), 2)],
        "warmup_extra_seconds": round(sum(durations[:warmup]) - warmup * per_step, 1),
        "tokens_per_second": round(tokens_per_row * config.sft_batch_size / per_step, 1),
        "peak_memory_mib": memory.stop(),
        # the same rows, seed and learning rate: every setting should train alike (compile and bf16 round differently)
        "losses": [round(loss, 4) for loss in losses],
    }


def time_greedy_answers(rows: list[dict], model_path: str, config: GRPOTrainingConfig, bf16: bool, count: int) -> dict:
    tokenizer = load_tokenizer(model_path)
    policy = load_policy(model_path, None, lora_config(config.lora_r, config.lora_alpha, config.lora_dropout)).eval()
    prompts = [r["prompt"] for r in rows[:count]]
    started = time.perf_counter()
    answers = [a for (a,) in generate(policy, tokenizer, prompts, DECISION_TOKENS, batch_size=16, bf16=bf16)]
    seconds = time.perf_counter() - started
    tokens = sum(len(tokenizer(a)["input_ids"]) for a in answers)
    return {
        "setting": f"greedy answers, {'bf16' if bf16 else 'float32'}",
        "answers": len(answers),
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
    }


def measure(
    rows: list[dict], model_path: str, work: Path, warmup: int, steps: int, answers: int, compile_too: bool = True
) -> dict:
    """Every setting on `rows` (prompt messages and the expert's `completion_text`)."""
    config = GRPOTrainingConfig.for_budget("standard", "rlvr")
    native = bf16_supported()
    tokens_per_row = mean_tokens_per_row(rows, load_tokenizer(model_path))
    supervised = []
    for setting in step_settings(native):
        if setting.compiled and not compile_too:
            continue
        with tempfile.TemporaryDirectory(prefix="srl-speed-", dir=work) as folder:
            supervised.append(
                time_supervised_steps(setting, rows, tokens_per_row, model_path, config, warmup, steps, Path(folder))
            )
        print(json.dumps(supervised[-1]), flush=True)
    generation = [
        time_greedy_answers(rows, model_path, config, bf16, answers) for bf16 in ([False, True] if native else [False])
    ]
    return {
        "rows": len(rows),
        "batch_size": config.sft_batch_size,
        "lora_r": config.lora_r,
        "supervised": supervised,
        "generation": generation,
    }


def benchmark(species: str, home: Path, warmup: int, steps: int, answers: int) -> dict:
    values = build_data(species, home)
    rows = expert_answers(values["rlvr_dataset"], values["expert_trajectories"])  # the train split's
    model_path = resolve_model(GRPOTrainingConfig().model, home / "model_cache")
    return {"species": species, **measure(rows, model_path, home, warmup, steps, answers)}


def to_markdown(out: dict) -> str:
    m = out["machine"]
    supervised = out["supervised"]
    reference = next(s for s in supervised if s["completion_logits"] and not s["compiled"] and not s["bf16"])
    recipe = next(s for s in supervised if s["completion_logits"] and not s["compiled"] and s["bf16"] == m["bf16"])
    lines = [
        f"# Training speed: {out['species']} ({out['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"native bf16 {'yes' if m['bf16'] else 'no (so float32; emulated bf16 is not a setting)'}. "
        f"Commit `{out['commit']}`. Run with `python -m bench.training_speed --species {out['species']}`.",
        "",
        f"Supervised steps of the standard recipe: LoRA r{out['lora_r']}, batch {out['batch_size']} of the "
        f"{out['rows']} train expert answers; the median of the timed steps after the warm-up ones.",
        "",
        markdown_table(
            [
                "setting",
                "s / step (min-max)",
                "tokens / s",
                "vs completion logits, float32",
                "warm-up extra s",
                "peak memory MiB",
                "loss at the last step",
            ],
            [
                [
                    s["setting"] + (" (the recipe here)" if s is recipe else ""),
                    f"{s['seconds_per_step']:.2f} ({s['seconds_per_step_spread'][0]:.2f}-"
                    f"{s['seconds_per_step_spread'][1]:.2f})",
                    f"{s['tokens_per_second']:.0f}",
                    f"{reference['seconds_per_step'] / s['seconds_per_step']:.2f}x",
                    f"{s['warmup_extra_seconds']:.0f}",
                    f"{s['peak_memory_mib']:.0f}",
                    f"{s['losses'][-1]:.4f}" if s["losses"] else "",
                ]
                for s in supervised
            ],
        ),
        "",
        markdown_table(
            ["generation", "answers", "seconds", "tokens / s"],
            [[g["setting"], g["answers"], g["seconds"], f"{g['tokens_per_second']:.0f}"] for g in out["generation"]],
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="vampire")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (torch.compile compiles in them)")
    parser.add_argument("--steps", type=int, default=10, help="timed supervised steps per setting")
    parser.add_argument("--answers", type=int, default=32, help="greedy answers timed per precision")
    parser.add_argument("--output", type=Path, default=STEM, help="where the .json and .md go (without suffix)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"srl-speed-{args.species}-") as home:
        # a cold inductor cache of its own, as a fresh machine has: the first compile pays for it, the second not
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(home) / "inductor")
        out = benchmark(args.species, Path(home), args.warmup, args.steps, args.answers)
    out = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), "commit": commit(), **out}
    text = to_markdown(out)
    # replaced whole or not at all: a run that fails here leaves the previous measurement as it was
    write_atomically(args.output.with_suffix(".json"), (json.dumps(out, indent=2) + "\n").encode("utf-8"))
    write_atomically(args.output.with_suffix(".md"), text.encode("utf-8"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
