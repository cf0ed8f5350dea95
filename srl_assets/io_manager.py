"""Asset values live in the artifact store: assets return domain objects and receive them typed.

An output is written content-addressed (`<asset>/<species>/<sha256><suffix>`, never overwritten), then
the asset partition's version pointer is moved to it: objects first, pointer last, so a failed write
leaves the previous version current. A reader gets the type it annotates (`lore: SpeciesLore`), read
from the pointer's version; plain dict/list values are JSON. The same code runs on the local folder
and on S3 (`ArtifactStoreResource`).
"""

from __future__ import annotations

from dagster import (
    ConfigurableIOManager,
    Failure,
    InputContext,
    MetadataValue,
    OutputContext,
)

from srl_forge.artifacts import (
    StoredArtifact,
    decode_artifact,
    encode_artifact,
    open_artifact_store,
)
from srl_forge.hashing import content_hash

WHOLE = "all"  # the "partition" of an unpartitioned asset


def _where(context: InputContext | OutputContext) -> tuple[str, str]:
    name = context.asset_key.path[-1]
    partition = context.asset_partition_key if context.has_asset_partitions else WHOLE
    return name, partition


class ArtifactIOManager(ConfigurableIOManager):
    """Step outputs as versioned artifacts in the artifact store (local folder or S3); configured like
    `ArtifactStoreResource` (`for_store`), so both always name the same store."""

    root: str
    cache_dir: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def for_store(cls, artifacts) -> ArtifactIOManager:
        return cls(root=artifacts.root, cache_dir=artifacts.cache_dir, endpoint_url=artifacts.endpoint_url)

    def store(self):
        return open_artifact_store(self.root, self.cache_dir, self.endpoint_url)

    def handle_output(self, context: OutputContext, obj) -> None:
        if obj is None:
            return
        name, partition = _where(context)
        store = self.store()
        data, suffix = encode_artifact(obj)
        # content-addressed by species: an NPC partition `species/npc` files under its species
        uri = store.put_bytes(name, partition.split("/", 1)[0], data, suffix)
        version = content_hash(data)
        store.put_pointer(
            name, partition, {"uri": uri, "version": version, "type": type(obj).__name__, "run_id": context.run_id}
        )
        if isinstance(obj, StoredArtifact):
            obj.stored_at(uri)
        context.add_output_metadata({"artifact_uri": MetadataValue.path(uri), "content_hash": version})

    def load_input(self, context: InputContext):
        name, partition = _where(context)
        store = self.store()
        pointer = store.get_pointer(name, partition)
        if pointer is None:
            raise Failure(
                description=f"{name} [{partition}] has no stored version in {store.root}: materialize it "
                "first (or check SRL_FORGE_ARTIFACTS_URL / SRL_FORGE_HOME)",
                allow_retries=False,
            )
        value = decode_artifact(store.get_bytes(pointer["uri"]), context.dagster_type.typing_type)
        if isinstance(value, StoredArtifact):
            value.stored_at(pointer["uri"])
        return value
