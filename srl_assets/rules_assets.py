"""Rules: the compiled rule set of a species under the live game state."""

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MetadataValue,
    Output,
    asset,
    observable_source_asset,
)

from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import SOURCE_VERSION_READ, markdown_table, versioned
from srl_assets.partitions import species_partitions, versions_by_species
from srl_assets.resources import GameStateResource, ProjectFiles
from srl_forge.databases import redact
from srl_forge.errors import InputError
from srl_forge.lore import SpeciesLore
from srl_forge.rulebook import CompiledRules, load_rulebook


@observable_source_asset(
    group_name="sources",
    description="World flags and live events (time of day, moon, weather, Blood Moon ...) in the game-state database.",
)
def game_state(game_state_db: GameStateResource) -> DataVersion:
    return DataVersion(game_state_db.store().version())


@observable_source_asset(
    partitions_def=species_partitions,
    group_name="sources",
    description="Rule files per species: rules/global.yaml (every species) and rules/<species>.yaml.",
)
def rules_sources(context, project_files: ProjectFiles):
    return versions_by_species(context.instance, project_files.rules_version)


@asset(
    partitions_def=species_partitions,
    group_name="rules",
    code_version="rules-2",
    kinds={"python", "yaml"},
    automation_condition=FRESH,
    deps=[game_state, rules_sources],
    description="The species' rulebook (global + species YAML, validated against its lore) and the rules "
    "switched on by the live game state.",
)
def rules(
    context: AssetExecutionContext,
    lore: SpeciesLore,
    project_files: ProjectFiles,
    game_state_db: GameStateResource,
) -> Output[CompiledRules]:
    read_version = project_files.rules_version(context.partition_key)
    with input_errors_as_failures():
        rulebook = load_rulebook(project_files.rules_path, context.partition_key, lore.document_ids)
        state = game_state_db.store().current()
        unknown = [e for e in state.live_events if e not in rulebook.known_events]
        if unknown:
            raise InputError(
                redact(game_state_db.location),
                "live_events",
                f"unknown live events {unknown}; "
                f"declare them under 'events' in {project_files.rules_path / 'global.yaml'}",
            )
    compiled = CompiledRules.compile(rulebook, state)
    active_ids = set(compiled.active_rule_ids)
    return versioned(
        compiled,
        {
            SOURCE_VERSION_READ: read_version,
            "rules": len(rulebook.rules),
            "active_rules": len(active_ids),
            "switched_off_by_events": MetadataValue.json(
                sorted(r.id for r in rulebook.rules if r.id not in active_ids)
            ),
            "actions": MetadataValue.json(list(rulebook.actions)),
            "game_state": MetadataValue.json(state.model_dump(mode="json")),
            "rules_table": markdown_table(
                ["rule", "priority", "effects", "source", "active"],
                [
                    (r.id, r.priority, _effects(r), r.source, "yes" if r.id in active_ids else "no")
                    for r in rulebook.rules
                ],
            ),
        },
    )


def _effects(rule) -> str:
    parts = [
        f"{name} {', '.join(getattr(rule, name))}" for name in ("require", "forbid", "prefer") if getattr(rule, name)
    ]
    if rule.dialogue:
        parts.append("dialogue")
    return "; ".join(parts)
