"""Helpers that turn domain results into metadata a person wants to see in the Dagster UI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dagster import DataVersion, MetadataValue, Output

from srl_forge import tables
from srl_forge.artifacts import artifact_version

# The version of its source files an asset read (hashed before reading): the sensors compare it with the
# newest observed version, so an edit observed while the asset ran is never lost.
SOURCE_VERSION_READ = "source_version_read"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> MetadataValue:
    return MetadataValue.md(tables.markdown_table(headers, rows))


def versioned(value, metadata: dict) -> Output:
    """An asset's value with its data version: the content hash of what the IO manager stores."""
    return Output(value, data_version=DataVersion(artifact_version(value)), metadata=metadata)
