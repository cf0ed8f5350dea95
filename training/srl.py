"""SRL training: step-wise GRPO with the similarity reward on a LoRA adapter.

Entry point (the in-process launcher calls `run_srl_job`; a SageMaker job runs the same module):
    python -m training.srl --job job.json

The job file holds the config, the parquet paths of the train / validation / replay rows, the
parent adapter to warm-start from, a work folder (checkpoints; resumable) and an output folder
(adapter, model card, metrics.json, reward_curve.png).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence

from srl_forge.policy import STEP_TOKENS, render_step_answer
from training.grpo_runner import (
    GRPOJob,
    GRPOTrainingConfig,
    Task,
    job_cli,
    run_grpo_job,
)
from training.policy_eval import srl_probe
from training.rewards import step_format_reward, step_similarity_reward


class SRLConfig(GRPOTrainingConfig):
    """SRL hyper-parameters (the `srl` section of a budget's recipe)."""


class SRLJob(GRPOJob):
    config: SRLConfig


def curve_rows(rows: list[dict], n: int, seed: int) -> list[dict]:
    """Half DECIDE rows (the decision, given the expert's earlier steps), half the other steps (the format)."""
    rng = random.Random(seed)
    decide = [r for r in rows if r["expert_title"] == "DECIDE"]
    other = [r for r in rows if r["expert_title"] != "DECIDE"]
    picked = rng.sample(decide, min(len(decide), n // 2)) + rng.sample(other, min(len(other), n - n // 2))
    chosen = {id(r) for r in picked}
    rest = [r for r in rows if id(r) not in chosen]  # too few of one kind: the other tops the sample up
    return picked + rng.sample(rest, min(len(rest), n - len(picked)))


SRL_TASK = Task(
    name="SRL",
    reward_funcs=(step_similarity_reward, step_format_reward),
    reward_weights=(1.0, 0.0),  # the format reward is logged only: it is the format rate
    format_metric="rewards/step_format_reward/mean",
    score_metric="rewards/step_similarity_reward/mean",
    grpo_columns=lambda r: {"prompt": r["prompt"], "expert_action": r["expert_action"]},
    sft_text=lambda r: render_step_answer(r["expert_thought"], r["expert_step"]),
    probe=srl_probe,
    curve_rows=curve_rows,
    answer_tokens=STEP_TOKENS,
)


def run_srl_job(
    job: SRLJob,
    log: Callable[[str], None] = print,
    callbacks: Sequence = (),
    step_log: Callable[[str], None] | None = None,
) -> dict:
    return run_grpo_job(SRL_TASK, job, log=log, callbacks=callbacks, step_log=step_log)


def main(argv: list[str] | None = None) -> int:
    return job_cli(SRLJob, run_srl_job, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
