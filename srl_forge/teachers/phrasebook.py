"""Each species' lines per action (voices/<species>.yaml), spoken by the programmatic expert."""

from __future__ import annotations

from pathlib import Path

import yaml

from srl_forge.errors import InputError
from srl_forge.rulebook import Rulebook

FOE_NAMES = {
    "villagers": "villager", "hunters": "hunter", "church": "priest", "necromancers": "necromancer",
    "merchants": "merchant", "thieves_guild": "thief",
}


def load_phrasebook(voices_root: Path, rulebook: Rulebook) -> dict[str, tuple[str, ...]]:
    path = voices_root / f"{rulebook.species}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(path, "file", f"no phrasebook for {rulebook.species}") from exc
    except yaml.YAMLError as exc:
        raise InputError(path, "yaml", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("species") != rulebook.species:
        raise InputError(path, "species", f"expected species {rulebook.species!r}")
    lines = raw.get("lines") or {}
    for action in rulebook.actions:
        entries = lines.get(action)
        if not entries or not all(isinstance(x, str) and x.strip() for x in entries):
            raise InputError(path, f"lines.{action}", "each action needs at least one line")
    unknown = set(lines) - set(rulebook.actions)
    if unknown:
        raise InputError(path, f"lines.{sorted(unknown)[0]}", "not an action of this species")
    return {action: tuple(lines[action]) for action in rulebook.actions}


def foe_name(faction: str) -> str:
    return FOE_NAMES.get(faction, faction.rstrip("s"))
