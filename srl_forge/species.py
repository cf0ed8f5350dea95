"""Species identifiers and discovery of species from the lore folder."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from srl_forge.errors import InputError

# Species names become partition keys, folder names and artifact paths: keep them boring.
SPECIES_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")  # fullmatch: "$" would let a trailing newline through

# Folders under the lore root that hold shared lore rather than a species.
SHARED_LORE_FOLDER = "_world"


def validate_species_id(name: str, source: str | Path = "species") -> str:
    """Return `name` if it is a safe species id, else raise InputError naming `source`."""
    if not isinstance(name, str) or not SPECIES_ID.fullmatch(name):
        raise InputError(
            source,
            "species",
            f"{name!r} is not a valid species id (lower-case letters, digits and '_', "
            "starting with a letter, at most 32 characters)",
        )
    return name


def check_inside(path: Path, root: Path) -> Path:
    """`path` itself, refused when it (or the symlink it is) leads outside `root`: lore and rules come
    from their folder only, so a link cannot pull another file of the machine into training data."""
    resolved = path.resolve()
    base = root.resolve()
    if resolved != base and base not in resolved.parents:
        raise InputError(
            path,
            "path",
            f"a symlink to {resolved}, outside {base}: links leaving the folder are refused (copy the file in instead)",
        )
    return path


def discover_species(lore_root: Path, on_invalid: Callable[[InputError], None] | None = None) -> list[str]:
    """Species with a lore folder under `lore_root`, sorted.

    A folder whose name is not a safe species id raises InputError, or, with `on_invalid`, is
    reported to it and skipped (a sensor must not stop watching every species for one bad folder).
    """
    if not lore_root.is_dir():
        raise InputError(lore_root, "lore_root", "lore folder does not exist")
    names = []
    for child in sorted(lore_root.iterdir()):
        if not child.is_dir() or child.name == SHARED_LORE_FOLDER or child.name.startswith("."):
            continue
        try:
            check_inside(child, lore_root)
            names.append(validate_species_id(child.name, child))
        except InputError as exc:
            if on_invalid is None:
                raise
            on_invalid(exc)
    return names


def require_known_species(name: str, lore_root: Path) -> str:
    """Validate `name` and check that it has a lore folder."""
    validate_species_id(name)
    if not (lore_root / name).is_dir():
        known = ", ".join(discover_species(lore_root)) or "none"
        raise InputError(lore_root / name, "species", f"unknown species {name!r} (known: {known})")
    return name
