"""The main job on the embedded defaults: `python -m srl_assets.run --species vampire`.

Runs in the persistent instance under DAGSTER_HOME, so the run and its materializations show up in
`dagster dev` afterwards.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from dagster import BetaWarning, DagsterInstance, PreviewWarning

from srl_assets.definitions import defs
from srl_assets.partitions import register_species
from srl_forge.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--species", required=True, help="species partition to materialize, e.g. vampire")
    args = parser.parse_args(argv)
    for category in (BetaWarning, PreviewWarning):
        warnings.filterwarnings("ignore", category=category)

    lore_root = defs.resources["project_files"].lore_path
    instance = DagsterInstance.get()
    try:
        register_species(instance, lore_root)  # all species with lore, so the UI shows every partition
        register_species(instance, lore_root, only=[args.species])
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    job = defs.resolve_job_def("species_pipeline")
    result = job.execute_in_process(
        partition_key=args.species,
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        shown = {k: v.value for k, v in mat.metadata.items() if isinstance(v.value, (int, float, str)) and len(str(v.value)) < 80}
        print(f"materialized {mat.asset_key.to_user_string()}[{mat.partition}]: {shown}")
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            details = {k: v.value for k, v in check.metadata.items()}
            print(f"check failed: {check.asset_check_key.asset_key.to_user_string()}:{check.asset_check_key.name} "
                  f"{details}", file=sys.stderr)
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"failed: {event.step_key}: {event.event_specific_data.error.message.strip()}", file=sys.stderr)
        return 1
    evaluated = [e for e in result.get_asset_materialization_events()
                 if e.event_specific_data.materialization.asset_key.to_user_string() == "evaluation"]
    if evaluated:
        table = evaluated[0].event_specific_data.materialization.metadata["comparison"].value
        print(f"\nHeld-out comparison for {args.species}:\n{table}\n")
    print(f"species_pipeline for {args.species}: success (run {result.run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
