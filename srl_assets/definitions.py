"""The srl-forge code location: `dagster dev -w workspace.yaml` loads `defs`."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job

from asset_checks import CHECKS
from srl_assets import (
    dataset_assets,
    deployment_assets,
    encounter_assets,
    evaluation_assets,
    lore_assets,
    performance_assets,
    persona_assets,
    player_assets,
    rules_assets,
    training_assets,
    trajectory_assets,
)
from srl_assets.io_manager import ArtifactIOManager
from srl_assets.partitions import npc_partitions, species_partitions
from srl_assets.resources import embedded_resources, forge_home
from srl_assets.sensors import SENSORS

ASSETS = [
    lore_assets.lore_sources,
    lore_assets.lore,
    rules_assets.game_state,
    rules_assets.rules_sources,
    rules_assets.rules,
    player_assets.player_logs,
    player_assets.served_drift,
    player_assets.player_interactions,
    encounter_assets.encounters,
    trajectory_assets.voice_sources,
    trajectory_assets.expert_trajectories,
    dataset_assets.srl_dataset,
    dataset_assets.rlvr_dataset,
    training_assets.srl_checkpoint,
    training_assets.rlvr_checkpoint,
    training_assets.rlvr_only_checkpoint,
    training_assets.sft_only_checkpoint,
    evaluation_assets.evaluation,
    evaluation_assets.ablation_evaluation,
    deployment_assets.deployed_adapter,
    performance_assets.adapter_performance,
    persona_assets.persona_sources,
    persona_assets.persona_adapter,
    persona_assets.deployed_persona,
]

# The main job: the whole pipeline for one species partition (sources are observed, not run).
species_pipeline = define_asset_job(
    "species_pipeline",
    selection=AssetSelection.all()
    - AssetSelection.groups("personas", "ablations")
    - AssetSelection.assets("adapter_performance"),
    partitions_def=species_partitions,
    description="Everything from lore to the deployed adapter, for one species.",
)

# What `make bench-learning` runs: the main job plus the ablations (SFT-only, RLVR-only) and their evaluation.
learning_pipeline = define_asset_job(
    "learning_pipeline",
    selection=AssetSelection.all() - AssetSelection.groups("personas") - AssetSelection.assets("adapter_performance"),
    partitions_def=species_partitions,
    description="The species pipeline plus the ablations and the full held-out comparison (the learning benchmark).",
)

# A named NPC (Tier 3): its persona adapter on top of the species' blue adapter, then its deployment.
persona_pipeline = define_asset_job(
    "persona_pipeline",
    selection=AssetSelection.groups("personas"),
    partitions_def=npc_partitions,
    description="Train, evaluate and deploy one named NPC's persona adapter.",
)


def build_definitions(home: Path | None = None, **paths) -> Definitions:
    home = Path(home) if home else forge_home()
    resources = embedded_resources(home, **paths)
    # asset values are artifacts: typed, content-addressed, on the same local folder or S3
    resources["io_manager"] = ArtifactIOManager.for_store(resources["artifacts"])
    return Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[species_pipeline, learning_pipeline, persona_pipeline],
        sensors=SENSORS,
        resources=resources,
    )


defs = build_definitions()
