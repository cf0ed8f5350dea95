"""The main job on the embedded defaults: `python -m srl_assets.run --species vampire`.

Runs in the persistent instance under DAGSTER_HOME, so the run and its materializations show up in
`dagster dev` afterwards.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dagster import DagsterInstance

from srl_assets.definitions import defs
from srl_assets.partitions import npc_partitions, register_personas, register_species
from srl_forge.errors import InputError
from srl_forge.game_state import GameStateStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--species", help="species partition to materialize, e.g. vampire")
    target.add_argument(
        "--reseed-game-state",
        action="store_true",
        help="replace the live game state with game_state/seed.yaml (a seed otherwise only starts an empty store)",
    )
    target.add_argument(
        "--npc",
        help="a named NPC (Tier 3) to train and deploy, e.g. vampire/count_orlok; its species must have a blue adapter",
    )
    args = parser.parse_args(argv)
    if args.reseed_game_state:
        game_state = defs.resources["game_state_db"]
        try:
            GameStateStore(game_state.location).load_seed(Path(game_state.seed_path), replace=True)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"game state replaced by {game_state.seed_path}; the source sensor sees the new version on its next tick")
        return 0
    lore_root = defs.resources["project_files"].lore_path
    instance = DagsterInstance.get()
    try:
        register_species(instance, lore_root)  # all species with lore, so the UI shows every partition
        register_personas(instance, lore_root)
        if args.species:
            register_species(instance, lore_root, only=[args.species])
        elif args.npc not in instance.get_dynamic_partitions(npc_partitions.name):
            raise InputError(
                lore_root,
                "npc",
                f"no persona file for {args.npc!r} (expected "
                f"lore/<species>/npcs/<npc>.md; known: {instance.get_dynamic_partitions(npc_partitions.name)})",
            )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    job = defs.resolve_job_def("species_pipeline" if args.species else "persona_pipeline")
    partition = args.species or args.npc
    result = job.execute_in_process(
        partition_key=partition,
        instance=instance,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        shown = {
            k: v.value
            for k, v in mat.metadata.items()
            if isinstance(v.value, (int, float, str)) and len(str(v.value)) < 80
        }
        print(f"materialized {mat.asset_key.to_user_string()}[{mat.partition}]: {shown}")
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            details = {k: v.value for k, v in check.metadata.items()}
            print(
                f"check failed: {check.asset_check_key.asset_key.to_user_string()}:{check.asset_check_key.name} "
                f"{details}",
                file=sys.stderr,
            )
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"failed: {event.step_key}: {event.event_specific_data.error.message.strip()}", file=sys.stderr)
        print(
            f"where to look: `make dev`, then http://127.0.0.1:3000/runs/{result.run_id} (every step's log "
            "and the failure in full)",
            file=sys.stderr,
        )
        return 1
    by_asset = {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
    }
    for name in ("evaluation", "persona_adapter"):
        if name in by_asset:
            key = "comparison" if name == "evaluation" else "held_out_comparison"
            print(f"\nHeld-out comparison for {partition}:\n{by_asset[name].metadata[key].value}\n")
    for name in ("deployed_adapter", "deployed_persona"):
        if name in by_asset:
            meta = by_asset[name].metadata
            print(f"Deployment of {partition}:\n{meta['outcome'].value}\n")
            if meta["failing_gates"].value:
                print(f"held back in green by: {', '.join(meta['failing_gates'].value)}\n{meta['gates'].value}\n")
                if "beats_references" in meta["failing_gates"].value:
                    print(
                        "For an adapter that has learned the decision, train the larger budget (its chain, without "
                        "the ablations, is about a third of the learning benchmark's 85 minutes a species on 2 "
                        f"cores): SRL_FORGE_TRAINING_BUDGET=standard make demo SPECIES={partition}\n"
                    )
            print(f"How to talk to it:\n{meta['how_to_talk_to_it'].value}\n")
    print(f"{job.name} for {partition}: success (run {result.run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
