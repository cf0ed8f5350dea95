"""RLVR training: GRPO with the outcome reward the rules engine verifies, from the SRL adapter (or
from the base model, for the ablation).

Entry point, as for SRL:  python -m training.rlvr --job job.json

The policy answers `<think>...</think>` then `ACTION: <id>` and `SAY: "..."`. Rewards (see
`training/rewards.py`): 1.0 acceptable and in character, 0.5 acceptable but out of character,
0.0 unacceptable action, -1.0 broken format or a guardrail violation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from srl_forge.trajectory import Trajectory
from training.grpo_runner import GRPOJob, GRPOTrainingConfig, Task, job_cli, run_grpo_job
from training.policy_eval import outcome_validation
from training.rewards import decision_format_reward, verified_outcome_reward


class RLVRConfig(GRPOTrainingConfig):
    """RLVR hyper-parameters (same budgets as SRL; answers are shorter, the warm-up lighter)."""

    max_completion_length: int = 80
    warmup_sft_steps: int = 12
    prompts_per_step: int = 1  # quick budget: the 15-minute one-species target on 2 CPU cores


class RLVRJob(GRPOJob):
    config: RLVRConfig


def decision_text(trajectory: Trajectory) -> str:
    """The expert's final answer in the RLVR format, for the format warm-up only."""
    decide = next(s for s in trajectory.steps if s.title == "DECIDE")
    return f'<think>{decide.thought}</think>\nACTION: {trajectory.final_action}\nSAY: "{trajectory.spoken_line}"'


def _validate(model, tokenizer, rows, max_new_tokens, progress):
    result = outcome_validation(model, tokenizer, rows, max_new_tokens, progress=progress)
    return {**result, "score": result["mean_reward"]}


RLVR_TASK = Task(
    name="RLVR",
    reward_funcs=(verified_outcome_reward, decision_format_reward),
    reward_weights=(1.0, 0.0),
    format_metric="rewards/decision_format_reward/mean",
    score_metric="rewards/verified_outcome_reward/mean",
    grpo_columns=lambda r: {"prompt": r["prompt"], "acceptable_actions": r["acceptable_actions"],
                            "dialogue_constraints_json": r["dialogue_constraints_json"]},
    warmup_text=None,  # RLVR rows carry no expert text: the warm-up rows come with the job
    validate=_validate,
)


def run_rlvr_job(job: RLVRJob, log: Callable[[str], None] = print, callbacks: Sequence = ()) -> dict:
    return run_grpo_job(RLVR_TASK, job, log=log, callbacks=callbacks)


def main(argv: list[str] | None = None) -> int:
    return job_cli(RLVRJob, run_rlvr_job, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
