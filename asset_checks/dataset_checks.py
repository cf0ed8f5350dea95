"""Datasets: size, no train/test leakage, and an SRL reward that can tell outputs apart."""

import io
import random

import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetIn, MetadataValue, asset_check

from srl_assets.dataset_assets import rlvr_dataset, srl_dataset
from srl_assets.partitions import species_partitions
from srl_assets.resources import ArtifactStoreResource
from srl_forge.encounters import EncounterSet
from training.rewards import step_similarity_reward

MIN_SRL_ROWS = 20
MIN_RLVR_ROWS = 5


def _rows(artifacts: ArtifactStoreResource, manifest: dict) -> list[dict]:
    return pq.read_table(io.BytesIO(artifacts.store().get_bytes(manifest["uri"]))).to_pylist()


def size_and_leakage(rows: list[dict], encounter_set: EncounterSet, minimum: int) -> dict:
    held_out = {e.encounter_id for e in encounter_set.encounters if e.split == "test"}
    leaked = sorted({r["encounter_id"] for r in rows if r["encounter_id"] in held_out or r["split"] == "test"})
    return {"rows": len(rows), "minimum": minimum, "leaked_encounters": leaked,
            "passed": len(rows) >= minimum and not leaked}


def _size_and_leakage_result(artifacts: ArtifactStoreResource, dataset: dict, encounters: dict,
                             minimum: int) -> AssetCheckResult:
    stats = size_and_leakage(_rows(artifacts, dataset), artifacts.load(encounters["uri"], EncounterSet), minimum)
    return AssetCheckResult(passed=stats["passed"], severity=AssetCheckSeverity.ERROR,
                            metadata={"rows": stats["rows"], "minimum_rows": stats["minimum"],
                                      "leaked_encounters": MetadataValue.json(stats["leaked_encounters"])})


@asset_check(asset=srl_dataset, blocking=True, partitions_def=species_partitions,
             additional_ins={"encounters": AssetIn("encounters")},
             description=f"At least {MIN_SRL_ROWS} rows and no row from a held-out encounter.")
def srl_dataset_size_and_leakage(context: AssetCheckExecutionContext, srl_dataset: dict, encounters: dict,
                                 artifacts: ArtifactStoreResource) -> AssetCheckResult:
    return _size_and_leakage_result(artifacts, srl_dataset, encounters, MIN_SRL_ROWS)


@asset_check(asset=rlvr_dataset, blocking=True, partitions_def=species_partitions,
             additional_ins={"encounters": AssetIn("encounters")},
             description=f"At least {MIN_RLVR_ROWS} rows and no row from a held-out encounter.")
def rlvr_dataset_size_and_leakage(context: AssetCheckExecutionContext, rlvr_dataset: dict, encounters: dict,
                                  artifacts: ArtifactStoreResource) -> AssetCheckResult:
    return _size_and_leakage_result(artifacts, rlvr_dataset, encounters, MIN_RLVR_ROWS)


def reward_spread(rows: list[dict], sample: int = 32, group: int = 4, seed: int = 0) -> float:
    """Mean within-group std of the SRL reward when each sampled row is scored against its own expert
    step and other rows' steps of the same kind: zero means GRPO would see no signal."""
    rng = random.Random(seed)
    by_title: dict[str, list[dict]] = {}
    for row in rows:
        by_title.setdefault(row["expert_title"], []).append(row)
    spreads = []
    for row in rng.sample(rows, min(sample, len(rows))):
        peers = [r for r in by_title[row["expert_title"]] if r["row_id"] != row["row_id"]]
        candidates = [row] + rng.sample(peers, min(group - 1, len(peers)))
        outputs = [f"<think>.</think>\n{c['expert_step']}" for c in candidates]
        rewards = step_similarity_reward(None, outputs, [row["expert_action"]] * len(outputs))
        mean = sum(rewards) / len(rewards)
        spreads.append((sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5)
    return sum(spreads) / max(1, len(spreads))


@asset_check(asset=srl_dataset, blocking=True, partitions_def=species_partitions,
             description="The step-similarity reward varies across plausible outputs on a sample (else GRPO's "
             "dynamic sampling would filter every group).")
def srl_reward_variance(context: AssetCheckExecutionContext, srl_dataset: dict,
                        artifacts: ArtifactStoreResource) -> AssetCheckResult:
    spread = reward_spread(_rows(artifacts, srl_dataset))
    return AssetCheckResult(passed=spread > 1e-4, severity=AssetCheckSeverity.ERROR,
                            metadata={"mean_reward_std": MetadataValue.float(spread)})
