"""SRL training: step-wise GRPO with the similarity reward on a LoRA adapter.

Entry point (the in-process launcher calls `run_srl_job`; a SageMaker job runs the same module):
    python -m training.srl --job job.json

The job file holds the config, the parquet paths of the train / validation / replay rows, the
parent adapter to warm-start from, a work folder (checkpoints; resumable) and an output folder
(adapter, model card, metrics.json, reward_curve.png).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from training.grpo_runner import GRPOJob, GRPOTrainingConfig, Task, job_cli, run_grpo_job
from training.policy_eval import srl_validation
from training.rewards import step_format_reward, step_similarity_reward


class SRLConfig(GRPOTrainingConfig):
    """SRL hyper-parameters: `quick` fits a 2-core CPU in minutes, `standard` about 20 minutes of it;
    `full` follows the paper on a GPU (with a LoRA learning rate)."""

    # SRL rows are long (the encounter and every earlier step): two rows per warm-up step keep the quick
    # budget's 20 steps within ~5 minutes on 2 cores; the format is learned from the number of updates.
    warmup_batch_size: int = 2


class SRLJob(GRPOJob):
    config: SRLConfig


def _validate(model, tokenizer, rows, max_new_tokens, progress):
    result = srl_validation(model, tokenizer, rows, max_new_tokens, progress=progress)
    return {**result, "score": result["step_similarity"]}


SRL_TASK = Task(
    name="SRL",
    reward_funcs=(step_similarity_reward, step_format_reward),
    reward_weights=(1.0, 0.0),  # the format reward is logged only: it is the format rate
    format_metric="rewards/step_format_reward/mean",
    score_metric="rewards/step_similarity_reward/mean",
    grpo_columns=lambda r: {"prompt": r["prompt"], "expert_action": r["expert_action"]},
    warmup_text=lambda r: f"<think>{r['expert_thought']}</think>\n{r['expert_step']}",
    validate=_validate,
)


def run_srl_job(job: SRLJob, log: Callable[[str], None] = print, callbacks: Sequence = (),
                step_log: Callable[[str], None] | None = None) -> dict:
    return run_grpo_job(SRL_TASK, job, log=log, callbacks=callbacks, step_log=step_log)


def main(argv: list[str] | None = None) -> int:
    return job_cli(SRLJob, run_srl_job, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
