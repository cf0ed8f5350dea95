"""Markdown tables: one writer (tabulate's GitHub format) for the asset metadata, the evaluation's comparison,
the settings page and the benchmark reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate


def markdown_cell(value: object) -> str:
    """A value as one table cell: a `|` or a line break inside it would end the cell or the row."""
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Cells are shown as given (numbers formatted by the caller, strings never re-parsed as numbers)."""
    return tabulate(
        [[markdown_cell(v) for v in row] for row in rows],
        headers=[markdown_cell(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )
