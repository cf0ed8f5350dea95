"""YAML as srl-forge reads every input file (lore front matter, rules, voices, personas, tiers, seeds,
teacher configuration): safe types only and no aliases. An alias (`*name`) can expand a few lines into
billions of nodes (a "YAML bomb"); none of our files needs one, so it is a parse error that the callers
report with the file's name like any other YAML error."""

from __future__ import annotations

from typing import Any

import yaml


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
