"""SRL step-wise rows: a trajectory of N steps gives N-1 rows; row k has the encounter and expert
steps 1..k-1 as context (optionally the next step's title) and expert step k as its target."""

from __future__ import annotations

import io
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from srl_forge.artifacts import StoredArtifact
from srl_forge.encounter import Encounter
from srl_forge.hashing import content_hash
from srl_forge.policy import srl_prompt
from srl_forge.trajectory import Trajectory
from training.outcome_dataset import upgrade_legacy_columns

TRAINING_SPLITS = ("train", "validation")  # the held-out test split never becomes training data


def names_next_title(row_id: str, share: float) -> bool:
    """Whether a row's prompt names the next step's title: a stable `share` of rows, by hash."""
    return int(content_hash(f"title:{row_id}")[:8], 16) / 0x100000000 < share


def step_rows(
    trajectory: Trajectory,
    encounter: Encounter,
    split: str,
    next_title_share: float = 0.5,
    top_actions: tuple[str, ...] = (),
) -> list[dict]:
    """Row k's prompt names step k's title in `next_title_share` of the rows (the paper found the title helps);
    the others ask for "step k" alone, so the policy also learns which step comes next — a rollout has no
    expert to tell it. `top_actions`: the engine's top choice(s), which the learning curve scores DECIDE rows on."""
    rows = []
    n = len(trajectory.steps)
    for k in range(2, n + 1):
        previous = [trajectory.step_text(i) for i in range(1, k)]
        step = trajectory.steps[k - 1]
        row_id = f"{trajectory.encounter_id}:{k}"
        rows.append(
            {
                "row_id": row_id,
                "encounter_id": trajectory.encounter_id,
                "species": trajectory.species,
                "split": split,
                "step_index": k,
                "num_steps": n,
                "prompt": srl_prompt(
                    encounter, previous, k, step.title if names_next_title(row_id, next_title_share) else None
                ),
                "expert_step": trajectory.step_text(k),
                "expert_title": step.title,
                "expert_action": step.action,
                "expert_thought": step.thought,
                "teacher": trajectory.teacher,
                "top_actions": list(top_actions),
            }
        )
    return rows


def to_parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, compression="zstd")
    return buffer.getvalue()


def from_parquet(data: bytes) -> list[dict]:
    return [upgrade_legacy_columns(row) for row in pq.read_table(io.BytesIO(data)).to_pylist()]


class RowDataset(StoredArtifact):
    """Training rows (SRL steps, RLVR verifier rows, persona rows), stored as parquet."""

    suffix: ClassVar[str] = ".parquet"
    rows: list[dict]

    def to_bytes(self) -> bytes:
        return to_parquet(self.rows)

    @classmethod
    def from_bytes(cls, data: bytes) -> RowDataset:
        return cls(rows=from_parquet(data))

    def split(self, *splits: str) -> list[dict]:
        return [r for r in self.rows if r["split"] in splits]


def size_and_leakage(rows: list[dict], held_out_encounter_ids: set[str], minimum: int) -> dict:
    """Enough rows, and none from a held-out encounter (the `*_size_and_leakage` checks)."""
    leaked = sorted(
        {r["encounter_id"] for r in rows if r["encounter_id"] in held_out_encounter_ids or r["split"] == "test"}
    )
    return {
        "rows": len(rows),
        "minimum": minimum,
        "leaked_encounters": leaked,
        "passed": len(rows) >= minimum and not leaked,
    }
