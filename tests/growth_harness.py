"""The growth harness: one project's Definitions on an ephemeral instance, its sensors ticked and its
automation evaluated by hand, so a test sees exactly what an edit makes them request."""

import json

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from asset_checks import CHECKS
from srl_assets import sensors
from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.sensors import player_log_sensor, source_sensor

CHEAP = ["lore", "rules", "player_interactions", "encounters"]


class Forge:
    def __init__(self, project, home):
        self.project, self.home = project, home
        self.defs = build_definitions(
            home=home,
            lore_root=project / "lore",
            rules_root=project / "rules",
            voices_root=project / "voices",
            game_state_seed=project / "game_state" / "seed.yaml",
        )
        self.instance = DagsterInstance.ephemeral()
        self.run_requests = []  # what the sensors asked to run, beside automation
        self.sensors = {
            "source_sensor": source_sensor,
            "player_log_sensor": player_log_sensor,
            "performance_sensor": sensors.performance_sensor,
        }
        self.cursors = dict.fromkeys(self.sensors)
        self.automation_cursor = None

    def cursors_version(self, source, species):
        return json.loads(self.cursors["source_sensor"])[source][species]

    def tick_sensors(self):
        for name, fn in self.sensors.items():
            context = build_sensor_context(
                instance=self.instance, cursor=self.cursors[name], resources=self.defs.resources
            )
            result = fn(context)
            for event in result.asset_events:
                self.instance.report_runless_asset_event(event)
            self.run_requests += result.run_requests or []
            self.cursors[name] = result.cursor

    def evaluate(self, selection=CHEAP):
        result = evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            asset_selection=AssetSelection.assets(*selection),
            cursor=self.automation_cursor,
        )
        self.automation_cursor = result.cursor
        return {
            key.to_user_string(): sorted(result.get_requested_partitions(key))
            for key in (AssetKey(a) for a in selection)
            if result.get_requested_partitions(key)
        }

    def materialize(self, species, selection=CHEAP, **kwargs):
        # with the asset checks, as a job from these Definitions would run them
        return materialize(
            [*ASSETS, *CHECKS],
            partition_key=species,
            instance=self.instance,
            resources=self.defs.resources,
            selection=selection,
            **kwargs,
        )
