"""Species are dynamic partitions: one per lore folder, registered on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dagster import DagsterInstance, DataVersion, DataVersionsByPartition, DynamicPartitionsDefinition

from srl_forge.personas import discover_personas
from srl_forge.species import discover_species, require_known_species

species_partitions = DynamicPartitionsDefinition(name="species")

# Named NPCs (Tier 3), keyed `species/npc` after their persona file `lore/<species>/npcs/<npc>.md`:
# one partition per NPC, so adding a persona trains and deploys that NPC alone.
npc_partitions = DynamicPartitionsDefinition(name="npc")


def register_species(instance: DagsterInstance, lore_root: Path, only: list[str] | None = None) -> list[str]:
    """Add a partition for every species with a lore folder (or just `only`); returns the new ones."""
    wanted = [require_known_species(s, lore_root) for s in only] if only else discover_species(lore_root)
    existing = set(instance.get_dynamic_partitions(species_partitions.name))
    new = [s for s in wanted if s not in existing]
    if new:
        instance.add_dynamic_partitions(species_partitions.name, new)
    return new


def register_personas(instance: DagsterInstance, lore_root: Path) -> list[str]:
    """Add an `npc` partition for every persona file; returns the new ones."""

    existing = set(instance.get_dynamic_partitions(npc_partitions.name))
    new = [k for k in discover_personas(lore_root) if k not in existing]
    if new:
        instance.add_dynamic_partitions(npc_partitions.name, new)
    return new


def versions_by_species(instance: DagsterInstance, version_of: Callable[[str], str]) -> DataVersionsByPartition:
    """An observable per-species source's versions: `version_of(species)` for every registered species."""
    species = instance.get_dynamic_partitions(species_partitions.name)
    return DataVersionsByPartition({s: DataVersion(version_of(s)) for s in species})
