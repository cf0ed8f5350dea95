"""Lore: the species' documents, its cited dossier and its semantic memory."""

from dagster import (
    AssetExecutionContext,
    DataVersion,
    DataVersionsByPartition,
    MetadataValue,
    Output,
    asset,
    observable_source_asset,
)

from srl_assets.automation import FRESH
from srl_assets.failures import input_errors_as_failures
from srl_assets.metadata import SOURCE_VERSION_READ, markdown_table, versioned
from srl_assets.partitions import species_partitions
from srl_assets.resources import ProjectFiles, SemanticMemoryResource
from srl_forge.lore import SpeciesLore, load_species_lore
from srl_forge.species import discover_species


@observable_source_asset(
    partitions_def=species_partitions,
    group_name="sources",
    description="Markdown lore files per species (lore/<species>/*.md plus shared lore/_world).",
)
def lore_sources(context, project_files: ProjectFiles):
    known = set(context.instance.get_dynamic_partitions(species_partitions.name))
    return DataVersionsByPartition(
        {
            species: DataVersion(project_files.lore_version(species))
            for species in discover_species(project_files.lore_path)
            if species in known
        }
    )


@asset(
    partitions_def=species_partitions,
    group_name="lore",
    code_version="lore-2",
    kinds={"python", "duckdb"},
    automation_condition=FRESH,
    deps=[lore_sources],
    description="Parsed lore documents and the consolidated dossier (every entry cites its document); "
    "lore chunks embedded into semantic memory.",
)
def lore(
    context: AssetExecutionContext,
    project_files: ProjectFiles,
    memory: SemanticMemoryResource,
) -> Output[SpeciesLore]:
    read_version = project_files.lore_version(context.partition_key)
    with input_errors_as_failures():
        species_lore = load_species_lore(project_files.lore_path, context.partition_key, project_files.lore_limits)

    def progress(done: int, total: int) -> None:
        context.log.info(f"embedded {done}/{total} new lore chunks")

    indexed = memory.memory().index(species_lore, progress=progress)
    dossier = species_lore.dossier
    words = sum(d.words for d in species_lore.documents)
    preview = "\n".join(
        f"- **{section}**: {entry.text} _({entry.source})_" for section, entry in dossier.entries()[:12]
    )
    return versioned(
        species_lore,
        {
            SOURCE_VERSION_READ: read_version,
            "documents": len(species_lore.documents),
            "words": words,
            "dossier_entries": len(dossier.entries()),
            "memory_chunks": indexed["chunks"],
            "chunks_embedded": indexed["embedded"],
            "chunks_reused": indexed["reused"],
            "documents_table": markdown_table(
                ["document", "title", "topic", "canon", "words"],
                [(d.doc_id, d.title, d.topic, d.canon_version, d.words) for d in species_lore.documents],
            ),
            "dossier_preview": MetadataValue.md(preview),
        },
    )
