"""Incremental refresh: `python -m bench.incremental` (part of `make bench`).

Five species materialized from scratch (the full refresh), then the sensors and the declarative
automation decide what to re-materialize after (a) a tick with no change, (b) one edited lore file,
(c) a live event in the game state. Reported: which asset partitions each one re-materialized and its
wall time next to the full refresh. Targets: (a) 0 runs, (b) exactly the changed species' chain in
<= 0.25 of the full refresh, (c) only what depends on the game state.

Scope: the data chain, lore -> rules -> encounters -> trajectories -> datasets (with their checks). With
`--through deployment` the chain runs on through SRL, SRL->RLVR, evaluation and deployment on the `tiny`
training budget (training/recipes/tiny.yaml: every stage, seconds per species, nothing learned), and the
changes measured are the full refresh, no change and the lore edit: what one edit re-trains and redeploys
against retraining all five species.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from asset_checks import CHECKS
from bench.report import machine_line, write_report
from srl_assets.chains import DATA_CHAIN, PRODUCT_CHAIN
from srl_assets.partitions import register_species
from srl_assets.resources import TrainingResource
from srl_assets.sensors import player_log_sensor, source_sensor
from srl_forge.game_state import GameStateStore
from srl_forge.tables import markdown_table

REPO = Path(__file__).resolve().parent.parent
CHAIN, TRAINING_CHAIN = DATA_CHAIN, PRODUCT_CHAIN
TARGET_RATIO = 0.25


class Refresher:
    """The sensors and the automation as the daemon runs them, with each requested run executed."""

    def __init__(self, project: Path, home: Path, chain: list[str] = CHAIN):
        from srl_assets.definitions import build_definitions  # noqa: PLC0415 - importing it builds the code location's `defs` from the environment

        self.project, self.home, self.chain = project, home, chain
        self.defs = build_definitions(
            home=home,
            lore_root=project / "lore",
            rules_root=project / "rules",
            game_state_seed=project / "game_state" / "seed.yaml",
        )
        self.resources = dict(self.defs.resources)
        if chain != CHAIN:  # training on the tiny budget: the chain's cost, not a monster worth serving
            configured = self.resources["training"]
            self.resources["training"] = TrainingResource(
                budget="tiny",
                model=configured.model,
                evaluation_encounters=6,
                work_root=configured.work_root,
                model_cache=configured.model_cache,
                launcher="in_process",
            )
        self.instance = DagsterInstance.ephemeral()
        self.sensor_cursors: dict[str, str | None] = {}
        self.automation_cursor = None

    def tick_sensors(self) -> None:
        for sensor in (source_sensor, player_log_sensor):
            context = build_sensor_context(
                instance=self.instance, cursor=self.sensor_cursors.get(sensor.name), resources=self.defs.resources
            )
            result = sensor(context)
            for event in result.asset_events:
                self.instance.report_runless_asset_event(event)
            self.sensor_cursors[sensor.name] = result.cursor

    def requested(self) -> dict[str, list[str]]:
        """partition -> assets the automation asks for on this tick."""

        result = evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            asset_selection=AssetSelection.assets(*self.chain),
            cursor=self.automation_cursor,
        )
        self.automation_cursor = result.cursor
        by_partition: dict[str, list[str]] = defaultdict(list)
        for asset in self.chain:
            for partition in result.get_requested_partitions(AssetKey(asset)):
                by_partition[partition].append(asset)
        return dict(by_partition)

    def run(self, partition: str, assets: list[str]) -> None:
        from srl_assets.definitions import ASSETS  # noqa: PLC0415 - importing it builds the code location's `defs` from the environment

        result = materialize(
            [*ASSETS, *CHECKS],
            partition_key=partition,
            instance=self.instance,
            resources=self.resources,
            selection=assets,
            raise_on_error=False,
        )
        if not result.success:
            raise RuntimeError(f"the refresh of {partition} {assets} failed")

    def until_settled(self) -> dict:
        """Tick, run what is requested, repeat until nothing is: what ran, how many runs, how long."""
        started, ran, runs = time.perf_counter(), defaultdict(list), 0
        self.tick_sensors()
        while requested := self.requested():
            for partition, assets in sorted(requested.items()):
                self.run(partition, assets)
                ran[partition].extend(assets)
                runs += 1
        return {
            "seconds": round(time.perf_counter() - started, 1),
            "runs": runs,
            "asset_partitions": sum(len(v) for v in ran.values()),
            "ran": {k: v for k, v in sorted(ran.items())},
        }


def benchmark(workdir: Path, chain: list[str] = CHAIN) -> dict:
    project = workdir / "project"
    for folder in ("lore", "rules", "game_state"):
        shutil.copytree(REPO / folder, project / folder)
    forge = Refresher(project, workdir / "home", chain)
    species = register_species(forge.instance, project / "lore")
    forge.tick_sensors()
    forge.requested()  # the first evaluation: everything is missing

    started = time.perf_counter()
    for name in species:
        forge.run(name, chain)
    full = {
        "seconds": round(time.perf_counter() - started, 1),
        "runs": len(species),
        "asset_partitions": len(species) * len(chain),
    }
    quiet = forge.until_settled()

    lore_file = project / "lore" / "ghoul" / "dialogue.md"
    lore_file.write_text(lore_file.read_text() + "- Laughs at every funeral it crashes.\n")
    lore_edit = forge.until_settled()

    game_state = None
    if chain == CHAIN:  # through deployment, every species re-trains on a live event: the full refresh again
        GameStateStore(forge.home / "game_state.duckdb").set_event("blood_moon", True)
        game_state = forge.until_settled()
    return {
        "species": species,
        "chain": chain,
        "training_budget": None if chain == CHAIN else "tiny",
        "full_refresh": full,
        "no_change_tick": quiet,
        "lore_edit": {
            **lore_edit,
            "edited": "lore/ghoul/dialogue.md",
            "ratio_to_full": round(lore_edit["seconds"] / full["seconds"], 3),
        },
        "game_state_change": None
        if game_state is None
        else {
            **game_state,
            "event": "blood_moon",
            "ratio_to_full": round(game_state["seconds"] / full["seconds"], 3),
        },
    }


def to_markdown(out: dict) -> str:
    full, quiet, edit, state = out["full_refresh"], out["no_change_tick"], out["lore_edit"], out["game_state_change"]
    only_ghoul = set(edit["ran"]) == {"ghoul"}
    lines = [
        "# Incremental refresh",
        "",
        machine_line(out),
        "",
        f"Five species ({', '.join(out['species'])}), the chain ({' -> '.join(out['chain'])}) with its "
        "checks; the sensors and the declarative automation choose what runs."
        + (
            f" Training on the `{out['training_budget']}` budget (every stage, nothing learned: the chain's cost)."
            if out.get("training_budget")
            else ""
        ),
        "",
        markdown_table(
            ["change", "runs", "asset partitions re-materialized", "seconds", "share of the full refresh", "target"],
            [
                ["full refresh (from scratch)", full["runs"], full["asset_partitions"], full["seconds"], "1.00", ""],
                [
                    "no change",
                    quiet["runs"],
                    quiet["asset_partitions"],
                    quiet["seconds"],
                    "",
                    f"{'met' if quiet['runs'] == 0 else 'MISSED'} (0 runs)",
                ],
                [
                    f"one lore file ({edit['edited']})",
                    edit["runs"],
                    f"{edit['asset_partitions']}: {_ran(edit)}",
                    edit["seconds"],
                    f"{edit['ratio_to_full']:.2f}",
                    f"{'met' if only_ghoul and edit['ratio_to_full'] <= TARGET_RATIO else 'MISSED'} "
                    f"(ghoul only, <= {TARGET_RATIO})",
                ],
            ]
            + (
                [
                    [
                        f"live event `{state['event']}`",
                        state["runs"],
                        f"{state['asset_partitions']}: {_ran(state)}",
                        state["seconds"],
                        f"{state['ratio_to_full']:.2f}",
                        f"{'met' if 'lore' not in sum(state['ran'].values(), []) else 'MISSED'} (no lore re-run)",
                    ]
                ]
                if state
                else []
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


def _ran(result: dict) -> str:
    return "; ".join(f"{species}: {', '.join(assets)}" for species, assets in result["ran"].items()) or "nothing"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--through", choices=["datasets", "deployment"], default="datasets", help="how far the chain runs"
    )
    through = parser.parse_args(argv).through
    chain, name = (CHAIN, "incremental") if through == "datasets" else (TRAINING_CHAIN, "incremental-training")
    with tempfile.TemporaryDirectory(prefix="srl-bench-incremental-") as workdir:
        write_report(name, benchmark(Path(workdir), chain), to_markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
