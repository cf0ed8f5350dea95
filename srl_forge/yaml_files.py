"""YAML as srl-forge reads every input file (lore front matter, rules, voices, personas, tiers, seeds,
teacher configuration): safe types only and no aliases. An alias (`*name`) can expand a few lines into
billions of nodes (a "YAML bomb"); none of our files needs one, so it is a parse error that the callers
report with the file's name like any other YAML error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from srl_forge.errors import InputError

# The largest rule or voice file read (a lore document's default limit): a larger one is refused unread.
MAX_SOURCE_FILE_BYTES = 1_000_000


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"alias *{event.anchor} not accepted: write the value out (aliases can expand without bound)",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def read_source_file(path: Path, max_bytes: int = MAX_SOURCE_FILE_BYTES) -> str:
    """A rule or voice file's text; an oversized or non-UTF-8 file is an InputError naming it."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(path, "file", f"{size} bytes, over the {max_bytes}-byte limit for a source file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, "file", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
