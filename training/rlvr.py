"""RLVR training: GRPO with the outcome reward the rules engine verifies, from the SRL adapter (or
from the base model, for the ablation).

Entry point, as for SRL:  python -m training.rlvr --job job.json

The policy answers `<think>...</think>` then `ACTION: <id>` and `SAY: "..."`. The reward (see
`training/rewards.py`) is the engine's graded decision score (top 1.0 ... unacceptable 0, -1 on a
broken format or a guardrail violation) plus smaller line parts: in character, grounded in this
encounter, not a stock phrase — each logged separately.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence

from srl_forge.policy import DECISION_TOKENS, render_answer
from srl_forge.trajectory import Trajectory
from training.grpo_runner import (
    GRPOJob,
    GRPOTrainingConfig,
    Task,
    job_cli,
    run_grpo_job,
)
from training.policy_eval import outcome_probe
from training.rewards import RLVR_REWARD_FUNCS, RLVR_REWARD_WEIGHTS


class RLVRConfig(GRPOTrainingConfig):
    """RLVR hyper-parameters (the `rlvr`, `rlvr_only`, `sft_only` and `persona` sections of a recipe)."""


class RLVRJob(GRPOJob):
    config: RLVRConfig


def applied_rules(trajectory: Trajectory) -> str:
    """The rules the expert applied, in its order (highest priority first), as one text."""
    return " ".join(s.action for s in trajectory.steps if s.title == "APPLY RULE")


def decision_text(trajectory: Trajectory) -> str:
    """The expert's final answer in the policy's format (the supervised phase's text, and the ceiling in
    evaluation): the expert's ASSESS step (the facts, copied from the encounter) and the rules it applied, as the
    thought; then the action and the line. Naming the rules before the action is what a small model learns the
    decision from: decision-first thoughts reached 0.45 on vampire validation where the rules reached 0.78
    (bench/results/sweep-thought-vampire.md); copying the facts first lets the rules read them: zombie 0.78
    [0.67, 0.88] against the rules alone 0.57 (sweep-evidence-thought-zombie.md), at the decision budget
    (`DECISION_TOKENS`) such a thought needs."""
    assess = next((s.action for s in trajectory.steps if s.title == "ASSESS"), None)
    if assess is None:
        raise ValueError(f"trajectory of encounter {trajectory.encounter_id}: no ASSESS step to open the answer")
    return render_answer(f"{assess} {applied_rules(trajectory)}", trajectory.final_action, trajectory.spoken_line)


def sample_rows(rows: list[dict], n: int, seed: int) -> list[dict]:
    return random.Random(seed).sample(rows, min(len(rows), n))


RLVR_TASK = Task(
    name="RLVR",
    reward_funcs=RLVR_REWARD_FUNCS,
    reward_weights=RLVR_REWARD_WEIGHTS,
    format_metric="rewards/decision_format_reward/mean",
    score_metric="rewards/graded_decision_reward/mean",
    grpo_columns=lambda r: {
        key: r[key]
        for key in (
            "prompt",
            "action_scores",
            "dialogue_constraints",
            "grounding_terms",
            "player_utterance",
            "stock_lines",
        )
    },
    sft_text=None,  # RLVR rows carry no expert text: the expert's answers come with the job (`sft_data`)
    probe=outcome_probe,
    curve_rows=sample_rows,
    answer_tokens=DECISION_TOKENS,
)


def run_rlvr_job(
    job: RLVRJob,
    log: Callable[[str], None] = print,
    callbacks: Sequence = (),
    step_log: Callable[[str], None] | None = None,
) -> dict:
    return run_grpo_job(RLVR_TASK, job, log=log, callbacks=callbacks, step_log=step_log)


def main(argv: list[str] | None = None) -> int:
    return job_cli(RLVRJob, run_rlvr_job, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
