"""Learning curves: the policy's decision accuracy and format on a fixed validation sample, probed at fixed
points through every phase of a training job (the start, the supervised phase, GRPO), so a run that
collapses onto one action shows as it happens — in the job's log at each probe, and in the plot and the
table of the trained asset."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field
from transformers import TrainerCallback

from training.plots import figure, png_bytes


class CurvePoint(BaseModel):
    """One probe: where in training it was taken, and what the policy did on the validation sample."""

    model_config = ConfigDict(frozen=True)
    phase: str  # "start", "sft" or "grpo"
    step: int  # the phase's optimizer step
    seconds: float  # since the job's training began (probes excluded)
    decision_accuracy: float
    format_rate: float
    rows: int
    predictions: dict[str, int] = Field(default_factory=dict)  # chosen action -> count (None: a broken format)

    @property
    def top_share(self) -> float:
        """The most chosen action's share: 1.0 is a policy that always answers one action."""
        return max(self.predictions.values(), default=0) / max(1, self.rows)


Probe = Callable[..., dict]  # (model, tokenizer, rows) -> {"decision_accuracy", "format_rate", "predictions"}


def probe_steps(total_steps: int, points: int) -> set[int]:
    """`points` steps evenly spread over a phase, the last at its end."""
    if total_steps <= 0 or points <= 0:
        return set()
    return {max(1, math.ceil(total_steps * k / points)) for k in range(1, points + 1)}


class LearningCurve:
    """Collects the probes of one job; `callback(phase, total_steps)` probes inside a trainer."""

    def __init__(
        self, probe: Probe, tokenizer, rows: Sequence[dict], points: int, log: Callable[[str], None], label: str
    ):
        self.probe_fn, self.tokenizer, self.rows, self.points = probe, tokenizer, list(rows), points
        self.log, self.label = log, label
        self.points_taken: list[CurvePoint] = []
        self.probe_seconds = 0.0
        self.started = time.perf_counter()

    def probe(self, model, phase: str, step: int) -> CurvePoint | None:
        if not self.rows:
            return None
        began = time.perf_counter()
        result = self.probe_fn(model, self.tokenizer, self.rows)
        point = CurvePoint(
            phase=phase,
            step=step,
            seconds=round(began - self.started - self.probe_seconds, 1),
            decision_accuracy=result["decision_accuracy"],
            format_rate=result["format_rate"],
            rows=len(self.rows),
            predictions={str(k): v for k, v in result["predictions"].items()},
        )
        self.probe_seconds += time.perf_counter() - began
        self.points_taken.append(point)
        top = max(point.predictions.items(), key=lambda kv: kv[1], default=("-", 0))
        self.log(
            f"{self.label} {phase} step {step}: validation decision accuracy {point.decision_accuracy:.2f}, "
            f"format {point.format_rate:.2f}, most chosen {top[0]} ({point.top_share:.0%} of {point.rows})"
        )
        return point

    def callback(self, phase: str, total_steps: int) -> TrainerCallback:
        curve, steps = self, probe_steps(total_steps, self.points)

        class ProbeAtSteps(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step in steps and state.is_world_process_zero:
                    curve.probe(model, phase, state.global_step)

        return ProbeAtSteps()

    def dump(self) -> list[dict]:
        return [p.model_dump() for p in self.points_taken]


def curve_png(points: Sequence[dict], title: str) -> bytes:
    """Decision accuracy, format rate and the most chosen action's share against training seconds, phases
    marked; GRPO's kept fraction is in the step table."""

    fig, ax = figure(6.4, 3.2)
    xs = [p["seconds"] for p in points]
    shares = [max(p["predictions"].values(), default=0) / max(1, p["rows"]) for p in points]
    ax.plot(xs, [p["decision_accuracy"] for p in points], marker="o", label="decision accuracy")
    ax.plot(xs, [p["format_rate"] for p in points], marker="s", label="format rate")
    ax.plot(xs, shares, marker="^", linestyle=":", label="most chosen action's share")
    for previous, point in zip(points, points[1:]):
        if point["phase"] != previous["phase"]:
            ax.axvline(previous["seconds"], color="#999999", linewidth=0.8)
            ax.text(previous["seconds"], 1.02, point["phase"], fontsize=7, color="#555555")
    ax.set_ylim(-0.02, 1.08)
    ax.set_xlabel("training seconds")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return png_bytes(fig)


def predictions_count(actions: Sequence[str | None]) -> dict[str, int]:
    return dict(Counter("(broken)" if a is None else a for a in actions).most_common())
