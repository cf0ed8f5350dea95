"""The IO manager every asset uses: typed values in, typed values out, content-addressed, on the local
folder and on S3 (moto on 127.0.0.1); the version pointer moves only once its version is stored."""

import pytest
from dagster import (
    AssetKey,
    Failure,
    StaticPartitionsDefinition,
    build_input_context,
    build_output_context,
)
from dagster._core.types.dagster_type import resolve_dagster_type

from srl_assets.io_manager import ArtifactIOManager
from srl_forge.encounter import GameState
from srl_forge.rulebook import CompiledRules, load_rulebook
from tests.helpers import RULES_ROOT
from training.step_dataset import RowDataset

SPECIES = StaticPartitionsDefinition(["vampire", "ghoul"])


@pytest.fixture
def io_manager(artifact_store):
    root = artifact_store.root if isinstance(artifact_store.root, str) else str(artifact_store.root)
    cache = str(getattr(artifact_store, "cache_dir", "")) or None
    endpoint = artifact_store.client.meta.endpoint_url if hasattr(artifact_store, "client") else None
    return ArtifactIOManager(root=root, cache_dir=cache, endpoint_url=endpoint)


def write(io_manager, asset: str, partition: str, value):
    context = build_output_context(
        asset_key=AssetKey(asset), partition_key=partition, asset_partitions_def=SPECIES, run_id="run-1"
    )
    io_manager.handle_output(context, value)
    return context.get_logged_metadata()


def read(io_manager, asset: str, partition: str, typ):
    return io_manager.load_input(
        build_input_context(
            asset_key=AssetKey(asset),
            partition_key=partition,
            asset_partitions_def=SPECIES,
            dagster_type=resolve_dagster_type(typ),
            upstream_output=build_output_context(asset_key=AssetKey(asset)),
        )
    )


def test_typed_values_round_trip_content_addressed(io_manager):
    compiled = CompiledRules.compile(load_rulebook(RULES_ROOT, "vampire"), GameState(live_events=("blood_moon",)))
    metadata = write(io_manager, "rules", "vampire", compiled)
    assert metadata["content_hash"].value == compiled.artifact_version
    loaded = read(io_manager, "rules", "vampire", CompiledRules)
    assert isinstance(loaded, CompiledRules) and loaded == compiled
    assert loaded.artifact_uri == metadata["artifact_uri"].value and compiled.artifact_version in loaded.artifact_uri

    rows = RowDataset(
        rows=[{"row_id": "a", "split": "train", "prompt": "p"}, {"row_id": "b", "split": "validation", "prompt": "q"}]
    )
    write(io_manager, "srl_dataset", "vampire", rows)
    dataset = read(io_manager, "srl_dataset", "vampire", RowDataset)
    assert dataset.artifact_uri.endswith(".parquet") and [r["row_id"] for r in dataset.split("train")] == ["a"]

    write(io_manager, "deployed_adapter", "vampire", {"target": "vampire", "tiers": {"tier1": "promoted"}})
    assert read(io_manager, "deployed_adapter", "vampire", dict)["tiers"] == {"tier1": "promoted"}


def test_a_new_version_is_stored_beside_the_old_one_and_becomes_current(io_manager):
    first = write(io_manager, "srl_dataset", "vampire", RowDataset(rows=[{"row_id": "1", "split": "train"}]))
    second = write(io_manager, "srl_dataset", "vampire", RowDataset(rows=[{"row_id": "2", "split": "train"}]))
    assert first["artifact_uri"].value != second["artifact_uri"].value
    assert read(io_manager, "srl_dataset", "vampire", RowDataset).rows[0]["row_id"] == "2"
    # nothing stored is overwritten: the earlier version stays readable by its URI
    old = RowDataset.from_bytes(io_manager.store().get_bytes(first["artifact_uri"].value))
    assert old.rows[0]["row_id"] == "1"


def test_a_failed_write_leaves_the_previous_version_current(io_manager, monkeypatch):
    write(io_manager, "srl_dataset", "ghoul", RowDataset(rows=[{"row_id": "kept", "split": "train"}]))

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    store_class = type(io_manager.store())
    monkeypatch.setattr(store_class, "put_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write(io_manager, "srl_dataset", "ghoul", RowDataset(rows=[{"row_id": "lost", "split": "train"}]))
    monkeypatch.undo()
    assert read(io_manager, "srl_dataset", "ghoul", RowDataset).rows[0]["row_id"] == "kept"


def test_reading_what_was_never_materialized_says_what_to_do(io_manager):
    with pytest.raises(Failure, match=r"encounters \[ghoul\] has no stored version.*materialize it first"):
        read(io_manager, "encounters", "ghoul", dict)


def test_an_npc_partition_is_filed_under_its_species(io_manager):
    npcs = StaticPartitionsDefinition(["vampire/count_orlok"])
    context = build_output_context(
        asset_key=AssetKey("persona_adapter"),
        partition_key="vampire/count_orlok",
        asset_partitions_def=npcs,
        run_id="run-1",
    )
    io_manager.handle_output(context, {"npc": "count_orlok"})
    assert "/persona_adapter/vampire/" in context.get_logged_metadata()["artifact_uri"].value
    loaded = io_manager.load_input(
        build_input_context(
            asset_key=AssetKey("persona_adapter"),
            partition_key="vampire/count_orlok",
            asset_partitions_def=npcs,
            dagster_type=resolve_dagster_type(dict),
            upstream_output=build_output_context(asset_key=AssetKey("persona_adapter")),
        )
    )
    assert loaded == {"npc": "count_orlok"}
