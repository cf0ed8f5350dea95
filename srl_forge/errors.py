"""Errors for bad input: each names the file and the field at fault."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input data (lore, rules, seeds, species names).

    The message always starts with the file (or input name) and the field, so a person can
    find and fix the problem without reading a traceback.
    """

    def __init__(self, source: str | Path, field: str, problem: str):
        self.source = str(source)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.source}: field '{field}': {problem}")
