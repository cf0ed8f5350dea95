"""Lore: schema and coverage."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from srl_assets.lore_assets import lore
from srl_assets.partitions import species_partitions
from srl_assets.resources import ArtifactStoreResource
from srl_forge.lore import TOPICS, SpeciesLore

MIN_DOCUMENTS = 4
REQUIRED_SECTIONS = ("traits", "weaknesses", "speech_style", "facts")


def lore_problems(species_lore: SpeciesLore) -> list[str]:
    own = [d for d in species_lore.documents if d.doc_id.startswith(f"{species_lore.species}/")]
    problems = []
    if len(own) < MIN_DOCUMENTS:
        problems.append(f"{len(own)} documents, at least {MIN_DOCUMENTS} needed")
    missing = sorted(set(TOPICS) - {d.topic for d in own})
    if missing:
        problems.append(f"no document on: {', '.join(missing)}")
    empty = [s for s in REQUIRED_SECTIONS if not getattr(species_lore.dossier, s)]
    if empty:
        problems.append(f"dossier sections without entries: {', '.join(empty)}")
    return problems


@asset_check(asset=lore, blocking=True, partitions_def=species_partitions,
             description=f"At least {MIN_DOCUMENTS} documents covering every topic, and a dossier with traits, "
             "weaknesses, speech style and facts.")
def lore_schema_and_coverage(context: AssetCheckExecutionContext, lore: dict,
                             artifacts: ArtifactStoreResource) -> AssetCheckResult:
    problems = lore_problems(artifacts.load(lore["uri"], SpeciesLore))
    return AssetCheckResult(passed=not problems, severity=AssetCheckSeverity.ERROR,
                            metadata={"problems": MetadataValue.json(problems)})
