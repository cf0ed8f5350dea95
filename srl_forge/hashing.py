"""Content hashes: the data version of every asset is the hash of what it produced."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def canonical_json(value: Any) -> str:
    """Stable JSON text for hashing: sorted keys, no whitespace, pydantic models dumped."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    """sha256 hex of bytes, text, or the canonical JSON of any other value."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    else:
        data = canonical_json(value).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def files_version(files: Iterable[tuple[str, Path]], max_bytes: int) -> str:
    """The version of source files as they are on disk: the hash of each (name, content hash). A missing,
    unreadable or oversized file is part of the version as such (the asset that reads it fails naming it), so
    a sensor that watches every species never crashes on one; an oversized file is not read at all."""
    digests = []
    for name, path in files:
        try:
            size = path.stat().st_size
            digest = f"refused: {size} bytes, over {max_bytes}" if size > max_bytes else content_hash(path.read_bytes())
        except OSError as exc:
            digest = f"unreadable: {exc.__class__.__name__}"
        digests.append((name, digest))
    return content_hash(digests)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    return value
