"""Reward and step cost: `python -m bench.rewards` (part of `make bench`).

1. The SRL reward (difflib step similarity, `training.rewards.step_similarity_reward`): rewards per
   second for actions of 64, 256 and 1024 tokens (the expert's and the policy's of equal length).
2. GRPO steps on the default policy (SmolLM2-135M + rank-16 LoRA, the SRL task, the quick budget's
   batch): our trainer (`DynamicSamplingGRPOTrainer`) against plain TRL `GRPOTrainer` on the same
   model, rows, batch and seed, each in its own process: samples/s, tokens/s, peak memory (max RSS),
   and the reward functions' share of the step time. The SFT warm-up is TRL's `SFTTrainer` unchanged;
   its step is measured the same way.
Targets: the reward under 1% of a GRPO step; our trainer within 1.1x of plain TRL.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from bench.report import machine_line, write_report
from srl_assets.resources import forge_home
from srl_forge.tables import markdown_table
from training.dynamic_sampling import DynamicSamplingGRPOTrainer
from training.model_loading import DEFAULT_POLICY, load_policy, load_tokenizer, lora_config, resolve_model
from training.rewards import step_format_reward, step_similarity_reward
from training.srl import SRL_TASK, SRLConfig

TARGET_REWARD_SHARE = 0.01
TARGET_TRAINER_RATIO = 1.1
WORDS = (
    "the vampire waits at the threshold of the old house and asks to be invited inside before the dawn "
    "comes over the hills where hunters gather silver and garlic under a waning moon"
).split()


def _text_of_tokens(tokenizer, n: int, rng: random.Random) -> str:
    words = []
    while len(tokenizer(" ".join(words))["input_ids"]) < n:
        words.extend(rng.choice(WORDS) for _ in range(8))
    ids = tokenizer(" ".join(words))["input_ids"][:n]
    return tokenizer.decode(ids)


def reward_throughput(model_cache: Path, batch: int = 64) -> list[dict]:
    tokenizer = load_tokenizer(resolve_model(DEFAULT_POLICY, model_cache))
    rng = random.Random(0)
    rows = []
    for tokens in (64, 256, 1024):
        experts = [f"ACTION: {_text_of_tokens(tokenizer, tokens, rng)}" for _ in range(batch)]
        completions = [
            f"<think>weighing it</think>\n3. **DECIDE** ACTION: {_text_of_tokens(tokenizer, tokens, rng)}"
            for _ in range(batch)
        ]
        started, calls = time.perf_counter(), 0
        while time.perf_counter() - started < 2.0:
            step_similarity_reward(None, completions, experts)
            calls += 1
        seconds = time.perf_counter() - started
        rows.append(
            {
                "action_tokens": tokens,
                "rewards_per_s": round(calls * batch / seconds, 1),
                "ms_per_reward": round(1000 * seconds / (calls * batch), 3),
            }
        )
    return rows


def _rows(n: int) -> list[dict]:
    """SRL rows like the datasets' (a system prompt, the encounter, earlier steps, the next title)."""
    rng = random.Random(1)
    actions = ["feed", "flee", "charm", "request_invitation", "retreat_to_shelter"]
    out = []
    for i in range(n):
        action = rng.choice(actions)
        out.append(
            {
                "prompt": [
                    {
                        "role": "system",
                        "content": "You are a vampire of the old blood. Think inside <think>...</think>, "
                        "then write the next step of your reasoning.",
                    },
                    {
                        "role": "user",
                        "content": f"Encounter {i}: night, a villager knocks at the door of a dwelling "
                        "you have not been invited into. 1. **ASSESS** A mortal at a door.\n2. **RECALL LORE** "
                        "vampire/weaknesses: thresholds.\nWrite step 3, a **DECIDE** step.",
                    },
                ],
                "expert_action": f"ACTION: {action}",
            }
        )
    return out


def worker(trainer_kind: str, steps: int, model_cache: str) -> dict:
    """One trainer's GRPO (or SFT) steps in this process; the parent runs each kind in a fresh process."""

    config = SRLConfig()  # the quick budget's defaults
    torch.manual_seed(0)
    model_path = resolve_model(DEFAULT_POLICY, Path(model_cache))
    tokenizer = load_tokenizer(model_path)
    policy = load_policy(model_path, None, lora_config(config.lora_r, config.lora_alpha, config.lora_dropout))
    reward_seconds = [0.0]

    def timed(fn):
        def reward(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                reward_seconds[0] += time.perf_counter() - started

        reward.__name__ = fn.__name__
        return reward

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:  # the first step warms caches and allocators: not counted
                self.started, reward_seconds[0] = time.perf_counter(), 0.0

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

    clock = Clock()
    rows = _rows(64)
    num_generations = config.num_generations or 4
    if trainer_kind == "sft":
        data = Dataset.from_list(
            [
                {
                    "prompt": r["prompt"],
                    "completion": [
                        {"role": "assistant", "content": f"<think>Decide.</think>\n3. **DECIDE** {r['expert_action']}"}
                    ],
                }
                for r in rows
            ]
        )
        trainer = SFTTrainer(
            model=policy,
            train_dataset=data,
            processing_class=tokenizer,
            callbacks=[clock],
            args=SFTConfig(
                output_dir="/tmp/srl-bench-sft",
                max_steps=steps,
                per_device_train_batch_size=config.warmup_batch_size,
                use_cpu=True,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                max_length=1024,
                seed=0,
                completion_only_loss=True,
                gradient_checkpointing=False,
                bf16=False,
            ),
        )
        batch = config.warmup_batch_size
    else:
        args = GRPOConfig(
            output_dir=f"/tmp/srl-bench-{trainer_kind}",
            max_steps=steps,
            per_device_train_batch_size=config.prompts_per_step * num_generations,
            num_generations=num_generations,
            loss_type="grpo",
            beta=config.beta,
            temperature=config.temperature,
            max_completion_length=config.max_completion_length or SRL_TASK.answer_tokens,
            learning_rate=config.learning_rate,
            max_grad_norm=config.max_grad_norm,
            reward_weights=[1.0, 0.0],
            use_cpu=True,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=0,
            disable_dropout=True,
            # as the runner: no checkpointing (it turns off the KV cache in generation), no bf16 on a CPU
            gradient_checkpointing=False,
            bf16=False,
        )
        common = dict(
            model=policy,
            reward_funcs=[timed(step_similarity_reward), timed(step_format_reward)],
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[clock],
        )
        trainer = (
            DynamicSamplingGRPOTrainer(**common, dynamic_sampling_epsilon=config.dynamic_sampling_epsilon)
            if trainer_kind == "ours"
            else GRPOTrainer(**common)
        )
        batch = config.prompts_per_step * num_generations
    trainer.train()
    measured_steps = steps - 1
    tokens = [h.get("num_tokens") for h in trainer.state.log_history if h.get("num_tokens") is not None]
    step_tokens = (tokens[-1] - tokens[0]) if len(tokens) > 1 else None
    return {
        "trainer": trainer_kind,
        "steps": measured_steps,
        "seconds": round(clock.seconds, 2),
        "samples_per_s": round(measured_steps * batch / clock.seconds, 3),
        "tokens_per_s": round(step_tokens / clock.seconds, 1) if step_tokens else None,
        "reward_seconds": round(reward_seconds[0], 4),
        "reward_share": round(reward_seconds[0] / clock.seconds, 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _in_process_of_its_own(kind: str, steps: int, model_cache: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.rewards",
            "--worker",
            kind,
            "--steps",
            str(steps),
            "--model-cache",
            str(model_cache),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def to_markdown(out: dict) -> str:
    lines = [
        "# Reward and step cost",
        "",
        machine_line(out),
        "",
        "## SRL reward (difflib step similarity)",
        "",
        markdown_table(
            ["action tokens", "rewards/s", "ms per reward"],
            [[r["action_tokens"], r["rewards_per_s"], r["ms_per_reward"]] for r in out["reward"]],
        ),
    ]
    steps = {r["trainer"]: r for r in out["steps"]}
    ours, plain = steps["ours"], steps["plain"]
    ratio = plain["samples_per_s"] / ours["samples_per_s"]
    lines += [
        "",
        f"## Training steps (SmolLM2-135M + rank-16 LoRA, SRL task, CPU; {ours['steps']} timed steps after "
        "one warm-up step, each trainer in its own process)",
        "",
    ]
    names = {
        "ours": "GRPO: ours (dynamic sampling)",
        "plain": "GRPO: plain TRL GRPOTrainer",
        "sft": "SFT warm-up (TRL SFTTrainer, unchanged)",
    }
    lines.append(
        markdown_table(
            ["trainer", "samples/s", "tokens/s", "reward share of the step", "peak RSS MB"],
            [
                [
                    names[kind],
                    steps[kind]["samples_per_s"],
                    steps[kind]["tokens_per_s"] or "",
                    "" if kind == "sft" else f"{steps[kind]['reward_share']:.3%}",
                    steps[kind]["peak_rss_mb"],
                ]
                for kind in ("ours", "plain", "sft")
            ],
        )
    )
    per_step = out["completions_per_step"]
    worst = max(r["ms_per_reward"] for r in out["reward"] if r["action_tokens"] <= 256) * per_step / 1000
    worst_share = worst / (ours["seconds"] / ours["steps"])
    lines += [
        "",
        f"- Reward share of a GRPO step: {ours['reward_share']:.3%} as measured (target < "
        f"{TARGET_REWARD_SHARE:.0%}: {'met' if ours['reward_share'] < TARGET_REWARD_SHARE else 'MISSED'}). "
        "The untrained base rarely writes the format, and a malformed answer is scored -1 at once; with every "
        f"one of the step's {per_step} completions well formed and 256 tokens long the reward would take "
        f"{worst * 1000:.1f} ms, {worst_share:.3%} of the step.",
        f"- Our trainer takes {ratio:.2f}x plain TRL's time per sample (target <= {TARGET_TRAINER_RATIO}x: "
        f"{'met' if ratio <= TARGET_TRAINER_RATIO else 'MISSED'}). Sampling is stochastic: completion "
        "lengths differ between runs, so tokens/s is the fairer speed and a few percent is noise.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="GRPO/SFT steps per trainer (the first is not timed)")
    parser.add_argument("--model-cache", default=None, help="where the policy is converted (default: SRL_FORGE_HOME)")
    parser.add_argument("--worker", choices=["ours", "plain", "sft"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    model_cache = Path(args.model_cache) if args.model_cache else forge_home()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, str(model_cache))))
        return 0

    config = SRLConfig()
    out = {
        "reward": reward_throughput(model_cache),
        "completions_per_step": config.prompts_per_step * (config.num_generations or 4),
        "steps": [_in_process_of_its_own(kind, args.steps, model_cache) for kind in ("ours", "plain", "sft")],
    }
    write_report("rewards", out, to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
