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


class InputErrors(InputError):
    """Several input problems found in one pass, all reported, so a writer fixes them in one go."""

    def __init__(self, errors: list[InputError]):
        self.errors = list(errors)
        first = self.errors[0]
        self.source, self.field, self.problem = first.source, first.field, first.problem
        ValueError.__init__(self, f"{len(self.errors)} problems:\n" + "\n".join(f"- {e}" for e in self.errors))


def raise_all(errors: list[InputError]) -> None:
    """Nothing if there is no problem; the problem itself if one; all of them if several."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputErrors(errors)


def validation_errors(source: str | Path, exc, field_of=None) -> list[InputError]:
    """Every problem of a pydantic `ValidationError`, each an InputError naming the file and the field's
    dotted path (`field_of(loc)` may name it better, e.g. a rule by its id instead of its index)."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = field_of(loc) if field_of else None
        out.append(InputError(source, field or ".".join(str(p) for p in loc) or "document", err["msg"]))
    return out
