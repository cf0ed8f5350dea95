"""Helpers that turn domain results into metadata a person wants to see in the Dagster UI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dagster import DataVersion, MetadataValue, Output

from srl_forge.artifacts import artifact_version


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> MetadataValue:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def versioned(value, metadata: dict) -> Output:
    """An asset's value with its data version: the content hash of what the IO manager stores."""
    return Output(value, data_version=DataVersion(artifact_version(value)), metadata=metadata)
