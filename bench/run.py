"""Benchmark the main job: `make bench` (or `python -m bench.run --species vampire`).

Runs the whole one-species pipeline on the embedded defaults in a fresh home folder and writes
`bench/results/<species>.json` and `bench/results/<species>.md`: wall time per asset and in total,
and the held-out evaluation table (base, SRL, RLVR-only, SRL→RLVR, references, ceiling). Targets live here, not
in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from bench.machine import commit, machine
from srl_assets.partitions import register_species
from srl_forge.tables import markdown_table

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SECONDS = 10 * 60  # the whole one-species job on a 2-core CPU (issue 12)


TRAINED = ("srl_checkpoint", "rlvr_checkpoint", "rlvr_only_checkpoint", "sft_only_checkpoint")


def machine_summary(m: dict) -> str:
    bf16 = "yes" if m["bf16"] else "no"
    return f"{m['cpu']}, {m['cores']} cores, bf16 {bf16}, torch {m['torch']}, Python {m['python']}"


def embedded_home(species: str, home: Path):
    """Point the process at `home` on the embedded defaults (its dagster.yaml as `make instance` writes it) and
    register `species`: the definitions and the instance, shared by the benchmarks and the sweeps."""
    os.environ["SRL_FORGE_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    instance_file = home / "dagster" / "dagster.yaml"
    if not instance_file.exists():  # the embedded instance's settings (telemetry off)
        instance_file.write_text((Path(__file__).resolve().parent.parent / "config/dagster/embedded.yaml").read_text())

    # after the environment points at `home`: importing the definitions builds the code location's `defs` from it
    from srl_assets.definitions import build_definitions  # noqa: PLC0415

    defs = build_definitions(home=home)
    instance = DagsterInstance.get()
    register_species(instance, defs.resources["project_files"].lore_path, only=[species])
    return defs, instance


def run(species: str, home: Path, job: str = "species_pipeline") -> dict:
    """Run `job` for one species in `home` (a fresh one: nothing cached) and collect where the time went, the
    evaluation report (the ablation evaluation's when the job has one) and each trained adapter's curves."""

    defs, instance = embedded_home(species, home)
    started = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(partition_key=species, instance=instance)
    total = time.perf_counter() - started
    starts, seconds = {}, {}
    for record in instance.all_logs(result.run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            seconds[event.step_key] = round(record.timestamp - starts[event.step_key], 2)
    metadata, phases, training = {}, {}, {}
    store = defs.resources["artifacts"].store()
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        key = mat.asset_key.to_user_string()
        metadata[key] = {
            k: v.value
            for k, v in mat.metadata.items()
            if isinstance(v.value, (int, float)) and not isinstance(v.value, bool)
        }
        if "phase_seconds" in mat.metadata:
            phases[key] = mat.metadata["phase_seconds"].value
        if key in TRAINED:
            metrics = json.loads(store.get_bytes(mat.metadata["manifest"].value["metrics_uri"]))
            kept = ("learning_curve", "steps", "training_seconds", "sft", "grpo_steps", "precision", "phase_seconds")
            training[key] = {k: metrics[k] for k in kept} | {
                k: metrics.get(k)
                for k in ("quantization", "peak_rss_mib")  # not in adapters trained before them
            }
    final = "ablation_evaluation" if job == "learning_pipeline" else "evaluation"
    evaluation_report = result.output_for_node(final).model_dump(mode="json") if result.success else None
    return {
        "species": species,
        "success": result.success,
        "total_seconds": round(total, 1),
        "evaluation_report": evaluation_report,
        "target_seconds": TARGET_SECONDS,
        "within_target": total <= TARGET_SECONDS,
        "asset_seconds": seconds,
        "training_phase_seconds": phases,
        "metrics": metadata,
        "training": training,
    }


def to_markdown(report: dict) -> str:
    lines = [
        f"# Benchmark: {report['species']} ({report['date']})",
        "",
        f"Machine: {report['machine']}. Commit `{report.get('commit', '?')}`.",
        "",
        f"Total: {report['total_seconds']} s (target {report['target_seconds']} s: "
        f"{'met' if report['within_target'] else 'missed'})",
        "",
        markdown_table(["asset", "seconds"], report["asset_seconds"].items()),
    ]
    phases = report.get("training_phase_seconds") or {}
    if phases:
        names = list(dict.fromkeys(name for p in phases.values() for name in p))
        lines += [
            "",
            "Training jobs, seconds per phase:",
            "",
            markdown_table(["asset", *names], [[asset, *(p.get(n, "") for n in names)] for asset, p in phases.items()]),
        ]
    if report.get("evaluation_table"):
        lines += [
            "",
            f"Held-out evaluation ({report['held_out_encounters']} encounters, 95% intervals; the budget's "
            "adapters next to the base model, the trivial references and the rules-engine ceiling):",
            "",
            report["evaluation_table"],
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", nargs="+", default=["vampire"])
    parser.add_argument("--home", help="home folder to use (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for species in args.species:
        home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix=f"srl-bench-{species}-"))
        report = run(species, home)
        report.update(
            date=datetime.now(UTC).isoformat(timespec="seconds"),
            machine=machine_summary(machine()),
            commit=commit(),
        )
        evaluation = report.pop("evaluation_report", None) or {}
        report.update(
            evaluation_table=evaluation.get("table"), held_out_encounters=evaluation.get("held_out_encounters")
        )
        (RESULTS / f"{species}.json").write_text(json.dumps(report, indent=2))
        (RESULTS / f"{species}.md").write_text(to_markdown(report))
        print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
