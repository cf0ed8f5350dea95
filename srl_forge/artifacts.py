"""Content-addressed artifact store for bulk data (JSON, parquet, adapters).

A version is written completely before anything refers to it, and a written version is never
overwritten: its name is its content hash. Two backends, chosen by the root's form
(`open_artifact_store`): a local folder (embedded default: temporary name, then rename) and S3
(production: single objects are atomic; a folder such as an adapter is published by uploading its
files first and its manifest last, and a folder without a manifest does not exist). Which version of
an asset partition is current is a small pointer object (`put_pointer`), written after the version it
names; `StoredArtifact` is the base of the domain objects stored this way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

from pydantic import BaseModel, PrivateAttr

from srl_forge.hashing import canonical_json, content_hash
from srl_forge.species import validate_species_id


class ArtifactStore(Protocol):
    def put_bytes(self, kind: str, species: str, data: bytes, suffix: str) -> str: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def exists(self, uri: str) -> bool: ...
    def put_json(self, kind: str, species: str, value: Any) -> str: ...
    def get_json(self, uri: str) -> Any: ...
    def put_directory(self, kind: str, species: str, source: Path, digest: str) -> str: ...
    def local_path(self, uri: str) -> Path: ...
    def put_pointer(self, name: str, partition: str, record: dict) -> None: ...
    def get_pointer(self, name: str, partition: str) -> dict | None: ...


class StoredArtifact(BaseModel):
    """A domain object the pipeline stores content-addressed (lore, compiled rules, encounter set,
    trajectories, datasets, adapters, evaluation reports). JSON unless a subclass picks another form;
    a loaded object knows the URI it came from, for lineage."""

    suffix: ClassVar[str] = ".json"
    _artifact_uri: str | None = PrivateAttr(default=None)

    def to_bytes(self) -> bytes:
        return canonical_json(self).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.model_validate_json(data)

    @property
    def artifact_version(self) -> str:
        """The content hash of the stored form: the asset's data version and the artifact's name."""
        return content_hash(self.to_bytes())

    @property
    def artifact_uri(self) -> str:
        if self._artifact_uri is None:
            raise ValueError(f"this {type(self).__name__} has not been stored yet")
        return self._artifact_uri

    def stored_at(self, uri: str):
        self._artifact_uri = uri
        return self

    def __eq__(self, other: object) -> bool:
        # where a value is stored is not part of it
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = BaseModel.__hash__


def encode_artifact(value: Any) -> tuple[bytes, str]:
    """The stored form of an asset value and its file suffix: a `StoredArtifact`'s own, else JSON."""
    if isinstance(value, StoredArtifact):
        return value.to_bytes(), value.suffix
    return canonical_json(value).encode("utf-8"), ".json"


def decode_artifact(data: bytes, expected: Any) -> Any:
    """An asset value from its stored form, as the type the reader declared (plain JSON otherwise)."""
    if isinstance(expected, type) and issubclass(expected, StoredArtifact):
        return expected.from_bytes(data)
    return json.loads(data)


def artifact_version(value: Any) -> str:
    return content_hash(encode_artifact(value)[0])


def _pointer_name(name: str, partition: str) -> tuple[str, str]:
    # a partition key may hold '/' (an NPC is `species/npc`): quoted into one file name
    return _check_kind(name), quote(partition, safe="") + ".json"


def write_atomically(target: Path, data: bytes) -> None:
    """`data` at `target`, complete or not at all: a temporary file beside it, synced, then renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _JsonArtifacts:
    def put_json(self, kind: str, species: str, value: Any) -> str:
        return self.put_bytes(kind, species, canonical_json(value).encode("utf-8"), ".json")

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))


def _check_kind(kind: str) -> str:
    if not kind or not all(c.isalnum() or c in "_-" for c in kind):
        raise ValueError(f"artifact kind {kind!r} must be alphanumeric with '_' or '-'")
    return kind


class LocalArtifactStore(_JsonArtifacts):
    """Artifacts under a local folder: `<root>/<kind>/<species>/<sha256><suffix>`."""

    scheme = "file://"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def path_for(self, uri: str) -> Path:
        if not uri.startswith(self.scheme):
            raise ValueError(f"not a local artifact uri: {uri}")
        path = Path(uri[len(self.scheme) :]).resolve()
        if self.root not in path.parents:
            raise ValueError(f"artifact uri {uri} is outside the store at {self.root}")
        return path

    def put_bytes(self, kind: str, species: str, data: bytes, suffix: str) -> str:
        digest = content_hash(data)
        target = self.root / _check_kind(kind) / validate_species_id(species) / f"{digest}{suffix}"
        if target.exists():
            # Same hash, same content: the version is already stored and stays as it is.
            return self.scheme + str(target)
        write_atomically(target, data)
        return self.scheme + str(target)

    def get_bytes(self, uri: str) -> bytes:
        return self.path_for(uri).read_bytes()

    def local_path(self, uri: str) -> Path:
        """Where the artifact can be read as a file or folder (here: where it is stored)."""
        return self.path_for(uri)

    def exists(self, uri: str) -> bool:
        return self.path_for(uri).exists()

    def put_pointer(self, name: str, partition: str, record: dict) -> None:
        """Which version of an asset partition is current: written after the version it points to."""
        folder, file = _pointer_name(name, partition)
        write_atomically(self.root / "_pointers" / folder / file, canonical_json(record).encode("utf-8"))

    def get_pointer(self, name: str, partition: str) -> dict | None:
        folder, file = _pointer_name(name, partition)
        path = self.root / "_pointers" / folder / file
        return json.loads(path.read_bytes()) if path.exists() else None

    def put_directory(self, kind: str, species: str, source: Path, digest: str) -> str:
        """Store a folder (e.g. a LoRA adapter) under `<kind>/<species>/<digest>/`, atomically."""
        target = self.root / _check_kind(kind) / validate_species_id(species) / digest
        if target.exists():
            return self.scheme + str(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".incoming-"))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.scheme + str(target)


MANIFEST = "_manifest.json"  # the last object of a published folder


class S3ArtifactStore(_JsonArtifacts):
    """Artifacts in S3 under `s3://<bucket>/<prefix>/<kind>/<species>/<sha256><suffix>`; folders as
    `<digest>/` with a manifest (file names, sizes, sha256) written after every file. `local_path`
    downloads into a local cache (verified, then renamed into place) for the libraries that read
    files: peft, the model server, vLLM."""

    scheme = "s3://"

    def __init__(self, root: str, cache_dir: str | Path, endpoint_url: str | None = None, client=None):
        if not root.startswith(self.scheme) or not root[len(self.scheme) :].split("/", 1)[0]:
            raise ValueError(f"not an s3 root: {root!r} (expected s3://bucket/prefix)")
        self.bucket, _, prefix = root[len(self.scheme) :].partition("/")
        self.prefix = prefix.strip("/")
        self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.cache_dir = Path(cache_dir).resolve()
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)  # None: AWS_ENDPOINT_URL or AWS itself
        self.client = client

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _key_of(self, uri: str) -> str:
        head = f"s3://{self.bucket}/"
        if not uri.startswith(head):
            raise ValueError(f"artifact uri {uri} is outside the store at {self.root}")
        key = uri[len(head) :]
        if (self.prefix and not key.startswith(self.prefix + "/")) or any(p in ("..", ".") for p in key.split("/")):
            raise ValueError(f"artifact uri {uri} is outside the store at {self.root}")
        return key

    def _has(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def put_bytes(self, kind: str, species: str, data: bytes, suffix: str) -> str:
        key = self._key(_check_kind(kind), validate_species_id(species), f"{content_hash(data)}{suffix}")
        if not self._has(key):  # same hash, same content: a stored version stays as it is
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"

    def get_bytes(self, uri: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key_of(uri))["Body"].read()

    def put_pointer(self, name: str, partition: str, record: dict) -> None:
        """Which version of an asset partition is current: one object, put after the version it names."""
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key("_pointers", *_pointer_name(name, partition)),
            Body=canonical_json(record).encode("utf-8"),
        )

    def get_pointer(self, name: str, partition: str) -> dict | None:
        key = self._key("_pointers", *_pointer_name(name, partition))
        return json.loads(self.get_bytes(f"s3://{self.bucket}/{key}")) if self._has(key) else None

    def exists(self, uri: str) -> bool:
        key = self._key_of(uri)
        return self._has(key.rstrip("/") + "/" + MANIFEST if uri.endswith("/") else key)

    def put_directory(self, kind: str, species: str, source: Path, digest: str) -> str:
        folder = self._key(_check_kind(kind), validate_species_id(species), _check_kind(digest))
        uri = f"s3://{self.bucket}/{folder}/"
        if self._has(f"{folder}/{MANIFEST}"):
            return uri
        files = []
        for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
            name = path.relative_to(source).as_posix()
            data = path.read_bytes()
            self.client.put_object(Bucket=self.bucket, Key=f"{folder}/{name}", Body=data)
            files.append({"name": name, "size": len(data), "sha256": content_hash(data)})
        self.client.put_object(
            Bucket=self.bucket, Key=f"{folder}/{MANIFEST}", Body=canonical_json({"files": files}).encode("utf-8")
        )
        return uri

    def local_path(self, uri: str) -> Path:
        key = self._key_of(uri)
        target = (self.cache_dir / key).resolve()
        if self.cache_dir not in target.parents:
            raise ValueError(f"artifact uri {uri} is outside the store at {self.root}")
        if target.exists():  # content-addressed: a cached copy never goes stale
            return target
        if not uri.endswith("/"):
            write_atomically(target, self.get_bytes(uri))
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        manifest = json.loads(self.get_bytes(uri.rstrip("/") + "/" + MANIFEST))
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".incoming-"))
        try:
            for entry in manifest["files"]:
                if entry["name"].startswith("/") or ".." in entry["name"].split("/"):
                    raise ValueError(f"{uri}{MANIFEST}: file name {entry['name']!r} leaves the folder")
                data = self.get_bytes(uri + entry["name"])
                if content_hash(data) != entry["sha256"]:
                    raise ValueError(f"{uri}{entry['name']}: content does not match its manifest")
                path = staging / entry["name"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target


def open_artifact_store(
    root: str | Path, cache_dir: str | Path | None = None, endpoint_url: str | None = None
) -> LocalArtifactStore | S3ArtifactStore:
    """`s3://bucket/prefix` (production) or a local folder (embedded default)."""
    text = str(root)
    if text.startswith(S3ArtifactStore.scheme):
        if cache_dir is None:
            raise ValueError("an s3 artifact store needs a local cache folder for the files it hands out")
        return S3ArtifactStore(text, cache_dir, endpoint_url)
    return LocalArtifactStore(text)
