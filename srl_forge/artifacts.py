"""Content-addressed artifact store for bulk data (JSON, parquet, adapters).

A version is written completely (to a temporary name, then renamed) before anything refers to
it, and a written version is never overwritten: its path is its content hash.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from srl_forge.hashing import canonical_json, content_hash
from srl_forge.species import validate_species_id


class ArtifactStore(Protocol):
    def put_bytes(self, kind: str, species: str, data: bytes, suffix: str) -> str: ...
    def get_bytes(self, uri: str) -> bytes: ...
    def exists(self, uri: str) -> bool: ...


def _check_kind(kind: str) -> str:
    if not kind or not all(c.isalnum() or c in "_-" for c in kind):
        raise ValueError(f"artifact kind {kind!r} must be alphanumeric with '_' or '-'")
    return kind


class LocalArtifactStore:
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
        return self.scheme + str(target)

    def put_json(self, kind: str, species: str, value: Any) -> str:
        return self.put_bytes(kind, species, canonical_json(value).encode("utf-8"), ".json")

    def get_bytes(self, uri: str) -> bytes:
        return self.path_for(uri).read_bytes()

    def get_json(self, uri: str) -> Any:
        return json.loads(self.get_bytes(uri))

    def exists(self, uri: str) -> bool:
        return self.path_for(uri).exists()

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
