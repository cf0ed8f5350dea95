"""Policy training assets: SRL, then RLVR from the SRL adapter, and the RLVR-only ablation.

Each trains a LoRA adapter through the `training` library's job entry point, stores it content-
addressed (never overwritten), and warm-starts from a parent: SRL from its own previous version
(with a replay of earlier rows), SRL→RLVR from the current SRL adapter, RLVR-only from its own
previous version or the base model.
"""

import base64
import json
from collections.abc import Callable
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetRecordsFilter,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from srl_assets.automation import FRESH, RETRAINED
from srl_assets.metadata import markdown_table, versioned
from srl_assets.partitions import species_partitions
from srl_assets.player_assets import served_drift
from srl_assets.resources import ArtifactStoreResource, TrainingResource
from srl_forge.artifacts import write_atomically
from srl_forge.hashing import content_hash
from srl_forge.teachers.collaboration import TrajectoryBatch
from training.grpo_runner import AdapterArtifact, GRPOJob, GRPOTrainingConfig
from training.rlvr import RLVRJob, decision_text, run_rlvr_job
from training.srl import SRLJob, run_srl_job
from training.step_dataset import RowDataset, to_parquet


def previous_manifest(context: AssetExecutionContext) -> dict | None:
    """What this asset produced last time for this species (its manifest, from the metadata)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[context.partition_key]),
        limit=1,
    ).records
    if not records:
        return None
    entry = records[0].asset_materialization.metadata.get("manifest")
    return entry.value if entry is not None else None


def directory_digest(folder: Path) -> str:
    return content_hash(
        [(str(p.relative_to(folder)), content_hash(p.read_bytes())) for p in sorted(folder.rglob("*")) if p.is_file()]
    )


def _write(rows: list[dict], path: Path) -> str | None:
    if not rows:
        return None
    write_atomically(path, to_parquet(rows))
    return str(path)


def png_markdown(png: bytes, alt: str) -> MetadataValue:
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _f(value) -> str:
    return "" if value is None else f"{value:.3f}"


def train_adapter(
    context: AssetExecutionContext,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
    *,
    kind: str,
    config: GRPOTrainingConfig,
    job_cls: type[GRPOJob],
    run: Callable,
    dataset: RowDataset,
    parent_adapter_uri: str | None,
    parent_version: str | None,
    replay_rows: list[dict],
    sft_rows: list[dict] | None = None,
    species: str | None = None,
) -> Output[AdapterArtifact]:
    """Write the job, run it, store the adapter content-addressed, and describe it for the UI.
    `species`: whose artifacts these are (default: the partition; a persona partition passes its species)."""
    species = species or context.partition_key
    store = artifacts.store()
    fingerprint = content_hash(
        {"config": config, "data": dataset.artifact_version, "parent": parent_version, "kind": kind}
    )[:16]
    job_dir = Path(training.work_root) / kind / species / fingerprint
    data = job_dir / "data"
    train_rows = dataset.split("train")
    validation_rows = dataset.split("validation")
    if not train_rows or not validation_rows:
        raise Failure(
            description=f"{kind}: the dataset {dataset.artifact_uri} has {len(train_rows)} train and "
            f"{len(validation_rows)} validation rows; both are needed (add encounters or raise "
            "validation_fraction in the encounters config)",
            allow_retries=False,
        )
    job = job_cls(
        config=config,
        train_data=_write(train_rows, data / "train.parquet"),
        validation_data=_write(validation_rows, data / "validation.parquet"),
        replay_data=_write(replay_rows, data / "replay.parquet"),
        sft_data=_write(sft_rows or [], data / "sft.parquet"),
        parent_adapter=str(store.local_path(parent_adapter_uri)) if parent_adapter_uri else None,
        work_dir=str(job_dir / "work"),
        output_dir=str(job_dir / "output"),
        model_cache=training.model_cache,
    )
    (job_dir / "job.json").write_text(job.model_dump_json(indent=2))
    launcher = training.sagemaker_launcher()
    if launcher is None:
        # Step lines at debug level: in the run's log in the UI, not between the terminal's step bar redraws.
        metrics, launched_on = run(job, log=context.log.info, step_log=context.log.debug), "in process"
    else:  # the same entry point (`python -m training.srl|rlvr --job`) on a SageMaker instance
        metrics = launcher.run(job, job_cls.__module__, fingerprint, log=context.log.info)
        launched_on = f"SageMaker {launcher.settings.instance_type} x{launcher.settings.instance_count}"

    output = Path(job.output_dir)
    digest = directory_digest(output / "adapter")
    adapter_uri = store.put_directory(f"{kind}_adapters", species, output / "adapter", digest)
    curve = (output / "reward_curve.png").read_bytes()
    curve_uri = store.put_bytes("plots", species, curve, ".png")
    learning = (output / "learning_curve.png").read_bytes()
    learning_uri = store.put_bytes("plots", species, learning, ".png")
    metrics_uri = store.put_json(f"{kind}_metrics", species, metrics)
    points, steps, sft = metrics["learning_curve"], metrics["steps"], metrics["sft"]
    adapter = AdapterArtifact(
        species=species,
        version=digest,
        adapter_uri=adapter_uri,
        metrics_uri=metrics_uri,
        parent_version=parent_version,
        base_model=config.model,
        dataset_uri=dataset.artifact_uri,
        dataset_version=dataset.artifact_version,
        training_seconds=metrics["training_seconds"],
    )
    kept = [s["kept_fraction"] for s in steps if s["kept_fraction"] is not None]
    zero = [s["zero_std_share"] for s in steps if s["zero_std_share"] is not None]
    last = points[-1] if points else None
    return versioned(
        adapter,
        {
            "manifest": MetadataValue.json(adapter.model_dump(mode="json")),
            **(
                {
                    "validation_decision_accuracy": MetadataValue.float(float(last["decision_accuracy"])),
                    "validation_format_rate": MetadataValue.float(float(last["format_rate"])),
                    "validation_rows_probed": last["rows"],
                }
                if last
                else {}
            ),
            "learning_curve": png_markdown(learning, "validation decision accuracy and format through training"),
            "learning_curve_table": markdown_table(
                ["phase", "step", "seconds", "decision acc.", "format", "most chosen"],
                [
                    (
                        p["phase"],
                        p["step"],
                        f"{p['seconds']:.0f}",
                        f"{p['decision_accuracy']:.2f}",
                        f"{p['format_rate']:.2f}",
                        _most_chosen(p),
                    )
                    for p in points
                ],
            ),
            "learning_curve_uri": MetadataValue.path(learning_uri),
            "sft_steps": sft["steps"],
            "sft_rows": sft["rows"],
            "sft_epochs": MetadataValue.float(float(sft["epochs"])),
            "final_format_rate": MetadataValue.float(float((steps[-1]["format_rate"] if steps else None) or 0.0)),
            "final_reward_mean": MetadataValue.float(float(steps[-1]["reward_mean"]) if steps else 0.0),
            "mean_kept_fraction": MetadataValue.float(sum(kept) / len(kept) if kept else 1.0),
            "mean_zero_variance_share": MetadataValue.float(sum(zero) / len(zero) if zero else 0.0),
            "grpo_steps": metrics["grpo_steps"],
            "training_seconds": MetadataValue.float(float(metrics["training_seconds"])),
            "phase_seconds": MetadataValue.json(metrics.get("phase_seconds", {})),
            "precision": metrics["precision"],
            "base_quantization": metrics.get("quantization", "none"),
            "peak_memory_mib": MetadataValue.float(float(metrics.get("peak_rss_mib") or 0.0)),
            "launched_on": launched_on,
            "train_rows": metrics["train_rows"],
            "replayed_rows": metrics["replayed_rows"],
            "parent_version": parent_version or "none",
            "resumed_from_checkpoint": metrics["resumed_from"] or "no",
            "steps_table": markdown_table(
                ["step", "reward", "std", "format", "kept", "zero-std groups", "loss", "tok/s"],
                [
                    (
                        s["step"],
                        _f(s["reward_mean"]),
                        _f(s["reward_std"]),
                        _f(s["format_rate"]),
                        _f(s["kept_fraction"]),
                        _f(s["zero_std_share"]),
                        _f(s["loss"]),
                        _f(s["tokens_per_s"]),
                    )
                    for s in steps
                ],
            ),
            "reward_curve": png_markdown(curve, "reward curve"),
            "reward_curve_uri": MetadataValue.path(curve_uri),
            "adapter_uri": MetadataValue.path(adapter_uri),
            "config": MetadataValue.json(json.loads(config.model_dump_json())),
        },
    )


def _most_chosen(point: dict) -> str:
    if not point["predictions"]:
        return ""
    action, count = max(point["predictions"].items(), key=lambda kv: kv[1])
    return f"{action} ({count}/{point['rows']})"


def _usable_parent(context, store, manifest: dict | None) -> dict | None:
    if manifest and not store.exists(manifest["adapter_uri"]):
        context.log.warning(f"previous adapter {manifest['adapter_uri']} is gone; starting fresh")
        return None
    return manifest


@asset(
    partitions_def=species_partitions,
    group_name="training",
    pool="training",  # one trainer at a time on a shared instance (config/dagster/postgres.yaml)
    code_version="srl-checkpoint-4",
    kinds={"pytorch", "python"},
    automation_condition=RETRAINED,  # served_drift is a trigger only
    deps=[served_drift],  # live play fell behind: retrain (performance_sensor)
    description="SRL LoRA adapter: a supervised phase on the expert's steps, then step-wise GRPO with the difflib "
    "step-similarity reward and dynamic sampling; warm-starts from the species' previous adapter with a replay "
    "of earlier rows. Metadata: the validation learning curve through both phases.",
)
def srl_checkpoint(
    context: AssetExecutionContext,
    srl_dataset: RowDataset,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
) -> Output[AdapterArtifact]:
    store = artifacts.store()
    parent = _usable_parent(context, store, previous_manifest(context))
    return train_adapter(
        context,
        artifacts,
        training,
        kind="srl",
        config=training.srl_config(),
        job_cls=SRLJob,
        run=run_srl_job,
        dataset=srl_dataset,
        parent_adapter_uri=parent["adapter_uri"] if parent else None,
        parent_version=parent["version"] if parent else None,
        replay_rows=_replay_rows(artifacts, parent),
    )


def _replay_rows(artifacts: ArtifactStoreResource, parent: dict | None) -> list[dict]:
    """The train rows the previous adapter learned from (replayed so it does not forget them)."""
    return artifacts.load(parent["dataset_uri"], RowDataset).split("train") if parent else []


def expert_answers(rlvr_dataset: RowDataset, expert_trajectories: TrajectoryBatch) -> list[dict]:
    """The expert's final answers for the train encounters in the policy's format (the supervised phase)."""
    prompts = {r["encounter_id"]: r["prompt"] for r in rlvr_dataset.split("train")}
    return [
        {"prompt": prompts[a.encounter_id], "completion_text": decision_text(a.trajectory)}
        for a in expert_trajectories.accepted
        if a.encounter_id in prompts
    ]


@asset(
    partitions_def=species_partitions,
    group_name="training",
    pool="training",  # one trainer at a time on a shared instance (config/dagster/postgres.yaml)
    code_version="rlvr-checkpoint-3",
    kinds={"pytorch", "python"},
    automation_condition=FRESH,
    description="SRL→RLVR: from the SRL adapter, a supervised phase on the expert's answers (the rules that "
    "apply, the action, the line), then GRPO with the outcome reward the rules engine verifies (graded decision, "
    "in-character and grounded line, guardrails, format). Metadata: the validation learning curve.",
)
def rlvr_checkpoint(
    context: AssetExecutionContext,
    rlvr_dataset: RowDataset,
    srl_checkpoint: AdapterArtifact,
    expert_trajectories: TrajectoryBatch,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
) -> Output[AdapterArtifact]:
    previous = _usable_parent(context, artifacts.store(), previous_manifest(context))
    return train_adapter(
        context,
        artifacts,
        training,
        kind="rlvr",
        config=training.rlvr_config(),
        job_cls=RLVRJob,
        run=run_rlvr_job,
        dataset=rlvr_dataset,
        parent_adapter_uri=srl_checkpoint.adapter_uri,
        parent_version=srl_checkpoint.version,
        replay_rows=_replay_rows(artifacts, previous),
        sft_rows=expert_answers(rlvr_dataset, expert_trajectories),
    )


def _ablation(context, rlvr_dataset, expert_trajectories, artifacts, training, kind: str) -> Output[AdapterArtifact]:
    """An ablation trained from the base model (or its own previous version) on the RLVR rows and the expert's
    answers, under its own stage of the recipe."""
    parent = _usable_parent(context, artifacts.store(), previous_manifest(context))
    return train_adapter(
        context,
        artifacts,
        training,
        kind=kind,
        config=training.config(kind),
        job_cls=RLVRJob,
        run=run_rlvr_job,
        dataset=rlvr_dataset,
        parent_adapter_uri=parent["adapter_uri"] if parent else None,
        parent_version=parent["version"] if parent else None,
        replay_rows=_replay_rows(artifacts, parent),
        sft_rows=expert_answers(rlvr_dataset, expert_trajectories),
    )


# The ablations answer "what does SRL add?": each gets about the seconds of the whole SRL→RLVR chain (its
# recipe stage is calibrated to it, and `training_seconds` is recorded beside every row). They are diagnostics,
# materialized by the learning benchmark or on demand, not by automation: a lore edit retrains the product's
# chain only.
@asset(
    partitions_def=species_partitions,
    group_name="ablations",
    pool="training",  # one trainer at a time on a shared instance (config/dagster/postgres.yaml)
    code_version="rlvr-only-checkpoint-3",
    kinds={"pytorch", "python"},
    description="The RLVR-only ablation: the RLVR stage (the expert's answers, then GRPO with the verified "
    "reward) without SRL before it, from the base model, for about the SRL→RLVR chain's seconds.",
)
def rlvr_only_checkpoint(
    context: AssetExecutionContext,
    rlvr_dataset: RowDataset,
    expert_trajectories: TrajectoryBatch,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
) -> Output[AdapterArtifact]:
    return _ablation(context, rlvr_dataset, expert_trajectories, artifacts, training, "rlvr_only")


@asset(
    partitions_def=species_partitions,
    group_name="ablations",
    pool="training",
    code_version="sft-only-checkpoint-1",
    kinds={"pytorch", "python"},
    description="The SFT-only ablation: supervised fine-tuning on the same expert trajectories' answers (loss on "
    "the completion only), no reinforcement, from the base model, for about the SRL→RLVR chain's seconds.",
)
def sft_only_checkpoint(
    context: AssetExecutionContext,
    rlvr_dataset: RowDataset,
    expert_trajectories: TrajectoryBatch,
    artifacts: ArtifactStoreResource,
    training: TrainingResource,
) -> Output[AdapterArtifact]:
    return _ablation(context, rlvr_dataset, expert_trajectories, artifacts, training, "sft_only")
