"""RLVR training: GRPO with the outcome reward the rules engine verifies, from the SRL adapter (or
from the base model, for the ablation).

Entry point, as for SRL:  python -m training.rlvr --job job.json

The policy answers `<think>...</think>` then `ACTION: <id>` and `SAY: "..."`. The reward (see
`training/rewards.py`) is the engine's graded decision score (top 1.0 ... unacceptable 0, -1 on a
broken format or a guardrail violation) plus smaller line parts: in character, grounded in this
encounter, not a stock phrase — each logged separately.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import ClassVar

from srl_forge.trajectory import Trajectory
from training.grpo_runner import GRPOJob, GRPOTrainingConfig, Task, job_cli, run_grpo_job
from training.policy_eval import outcome_validation
from training.rewards import RLVR_REWARD_FUNCS, RLVR_REWARD_WEIGHTS


class RLVRConfig(GRPOTrainingConfig):
    """RLVR hyper-parameters (same budgets as SRL; answers are shorter, the warm-up lighter)."""

    max_completion_length: int = 96  # a short reason, the action and a line of up to ~35 words
    warmup_sft_steps: int = 10
    prompts_per_step: int = 1  # quick budget: the 15-minute one-species target on 2 CPU cores

    STANDARD: ClassVar[dict] = dict(max_steps=8, learning_rate=1e-4, warmup_sft_steps=32, warmup_batch_size=4,
                                    warmup_learning_rate=5e-4, validation_rows=12, save_steps=2)


class RLVRJob(GRPOJob):
    config: RLVRConfig


def decision_text(trajectory: Trajectory) -> str:
    """The expert's final answer in the RLVR format (format warm-up, and the ceiling in evaluation): the
    reason that decided it (the DECIDE thought's "I choose X: <rule> puts it first"), the action, the line."""
    decide = next(s for s in trajectory.steps if s.title == "DECIDE")
    reason = decide.thought
    if "I choose " in reason:
        reason = "I choose " + reason.split("I choose ", 1)[1].split(";")[0].split(". ")[0].rstrip(".") + "."
    return f'<think>{reason}</think>\nACTION: {trajectory.final_action}\nSAY: "{trajectory.spoken_line}"'


def _validate(model, tokenizer, rows, max_new_tokens, progress):
    result = outcome_validation(model, tokenizer, rows, max_new_tokens, progress=progress)
    return {**result, "score": result["mean_reward"]}


RLVR_TASK = Task(
    name="RLVR",
    reward_funcs=RLVR_REWARD_FUNCS,
    reward_weights=RLVR_REWARD_WEIGHTS,
    format_metric="rewards/decision_format_reward/mean",
    score_metric="rewards/graded_decision_reward/mean",
    grpo_columns=lambda r: {key: r[key] for key in (
        "prompt", "action_scores_json", "dialogue_constraints_json", "grounding_terms_json", "player_utterance",
        "stock_lines")},
    warmup_text=None,  # RLVR rows carry no expert text: the warm-up rows come with the job
    validate=_validate,
)


def run_rlvr_job(job: RLVRJob, log: Callable[[str], None] = print, callbacks: Sequence = (),
                step_log: Callable[[str], None] | None = None) -> dict:
    return run_grpo_job(RLVR_TASK, job, log=log, callbacks=callbacks, step_log=step_log)


def main(argv: list[str] | None = None) -> int:
    return job_cli(RLVRJob, run_rlvr_job, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
