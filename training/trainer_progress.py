"""What a training job shows while it runs: one step bar per stage in the terminal, and a line per step
(loss, reward, kept fraction) in the job's log — the Dagster run log when the asset runs it."""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm.auto import tqdm
from transformers import ProgressCallback, Trainer, TrainerCallback


class StageBar(ProgressCallback):
    """The trainer's step bar, named for its stage; the per-step values go to the log, not under the bar."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # ProgressCallback's bar, named from its first draw
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, desc=self.stage)
        self.current_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


class StepLog(TrainerCallback):
    """A log line per logged step; GRPO steps also get tokens/s in the trainer's log history."""

    def __init__(self, stage: str, log: Callable[[str], None]):
        self.stage, self.log = stage, log
        self.started, self.tokens = time.perf_counter(), 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()  # not the trainer's set-up time

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        if "reward" in logs:
            elapsed = time.perf_counter() - self.started
            tokens = logs.get("num_tokens", 0.0)
            if state.log_history:  # the trainer stored a copy of `logs` before calling back
                state.log_history[-1]["tokens_per_s"] = (tokens - self.tokens) / elapsed if elapsed > 0 else 0.0
            self.started, self.tokens = time.perf_counter(), tokens
            self.log(
                f"{self.stage} step {state.global_step}/{state.max_steps}: reward {logs['reward']:.3f}, "
                f"kept {logs.get('dynamic_sampling/kept_fraction', 1.0):.2f}"
            )
        elif "loss" in logs:
            self.log(f"{self.stage} step {state.global_step}/{state.max_steps}: loss {logs['loss']:.3f}")


def show_progress(trainer: Trainer, stage: str, log: Callable[[str], None]) -> Trainer:
    """Replace the trainer's bar (which also prints every logged dict) with a named bar and log lines."""
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(StageBar(stage))
    trainer.add_callback(StepLog(stage, log))
    return trainer
