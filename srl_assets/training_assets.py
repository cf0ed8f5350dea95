"""Policy training assets: the SRL adapter per species, warm-started from its previous version."""

import base64
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, AssetRecordsFilter, DataVersion, MetadataValue, Output, asset

from srl_assets.metadata import markdown_table
from srl_assets.partitions import species_partitions
from srl_assets.resources import ArtifactStoreResource, TrainingResource
from srl_forge.hashing import content_hash
from training.srl import SRLJob, run_srl_job


def previous_manifest(context: AssetExecutionContext) -> dict | None:
    """What this asset produced last time for this species (its manifest, from the metadata)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[context.partition_key]), limit=1,
    ).records
    if not records:
        return None
    entry = records[0].asset_materialization.metadata.get("manifest")
    return entry.value if entry is not None else None


def directory_digest(folder: Path) -> str:
    return content_hash([(str(p.relative_to(folder)), content_hash(p.read_bytes()))
                         for p in sorted(folder.rglob("*")) if p.is_file()])


def _rows(store, uri: str, splits: tuple[str, ...]) -> list[dict]:
    rows = pq.read_table(io.BytesIO(store.get_bytes(uri))).to_pylist()
    return [r for r in rows if r["split"] in splits]


def _write(rows: list[dict], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def png_markdown(png: bytes, alt: str) -> MetadataValue:
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


@asset(
    partitions_def=species_partitions,
    group_name="training",
    code_version="srl-checkpoint-1",
    kinds={"pytorch", "python"},
    description="SRL LoRA adapter: step-wise GRPO with the difflib step-similarity reward and dynamic "
    "sampling, after a format warm-up when needed; warm-starts from the species' previous adapter with "
    "a replay of earlier rows.",
)
def srl_checkpoint(context: AssetExecutionContext, srl_dataset: dict, artifacts: ArtifactStoreResource,
                   training: TrainingResource) -> Output[dict]:
    species = context.partition_key
    store = artifacts.store()
    config = training.srl_config()
    parent = previous_manifest(context)
    if parent and not store.exists(parent["adapter_uri"]):
        context.log.warning(f"previous adapter {parent['adapter_uri']} is gone; training a fresh one")
        parent = None
    fingerprint = content_hash({"config": config, "data": srl_dataset["version"],
                                "parent": parent["version"] if parent else None})[:16]
    job_dir = Path(training.work_root) / "srl" / species / fingerprint
    replay = _rows(store, parent["srl_dataset_uri"], ("train",)) if parent else []
    job = SRLJob(
        config=config,
        train_data=_write(_rows(store, srl_dataset["uri"], ("train",)), job_dir / "data" / "train.parquet"),
        validation_data=_write(_rows(store, srl_dataset["uri"], ("validation",)), job_dir / "data" / "validation.parquet"),
        replay_data=_write(replay, job_dir / "data" / "replay.parquet") if replay else None,
        parent_adapter=str(store.path_for(parent["adapter_uri"])) if parent else None,
        work_dir=str(job_dir / "work"),
        output_dir=str(job_dir / "output"),
        model_cache=training.model_cache,
    )
    (job_dir / "job.json").write_text(job.model_dump_json(indent=2))
    metrics = run_srl_job(job, log=context.log.info)

    output = Path(job.output_dir)
    digest = directory_digest(output / "adapter")
    adapter_uri = store.put_directory("srl_adapters", species, output / "adapter", digest)
    curve = (output / "reward_curve.png").read_bytes()
    curve_uri = store.put_bytes("plots", species, curve, ".png")
    metrics_uri = store.put_json("srl_metrics", species, metrics)
    before, after, steps = metrics["validation_before"], metrics["validation_after"], metrics["steps"]
    manifest = {
        "species": species, "version": digest, "adapter_uri": adapter_uri, "metrics_uri": metrics_uri,
        "parent_version": parent["version"] if parent else None, "base_model": config.model,
        "srl_dataset_uri": srl_dataset["uri"], "srl_dataset_version": srl_dataset["version"],
    }
    kept = [s["kept_fraction"] for s in steps if s["kept_fraction"] is not None]
    return Output(
        manifest,
        data_version=DataVersion(digest),
        metadata={
            "manifest": MetadataValue.json(manifest),
            "validation_similarity_before": MetadataValue.float(before["step_similarity"]),
            "validation_similarity_after": MetadataValue.float(after["step_similarity"]),
            "validation_format_rate_before": MetadataValue.float(before["format_rate"]),
            "validation_format_rate_after": MetadataValue.float(after["format_rate"]),
            "final_reward_mean": MetadataValue.float(float(steps[-1]["reward_mean"]) if steps else 0.0),
            "mean_kept_fraction": MetadataValue.float(sum(kept) / len(kept) if kept else 1.0),
            "grpo_steps": metrics["grpo_steps"],
            "format_warmup": "ran" if metrics["warmup"]["ran"] else "skipped",
            "train_rows": metrics["train_rows"], "replayed_rows": metrics["replayed_rows"],
            "parent_version": manifest["parent_version"] or "none",
            "resumed_from_checkpoint": metrics["resumed_from"] or "no",
            "steps_table": markdown_table(
                ["step", "reward", "std", "format", "kept", "loss", "tok/s"],
                [(s["step"], _f(s["reward_mean"]), _f(s["reward_std"]), _f(s["format_rate"]), _f(s["kept_fraction"]),
                  _f(s["loss"]), _f(s["tokens_per_s"])) for s in steps]),
            "reward_curve": png_markdown(curve, "reward curve"),
            "reward_curve_uri": MetadataValue.path(curve_uri),
            "adapter_uri": MetadataValue.path(adapter_uri),
            "validation_samples": MetadataValue.json(after["samples"][:3]),
            "config": MetadataValue.json(json.loads(config.model_dump_json())),
        },
    )


def _f(value) -> str:
    return "" if value is None else f"{value:.3f}"
