"""Named NPCs (Tier 3): a persona file per NPC beside its species' lore.

`lore/<species>/npcs/<npc>.md`:

    ---
    name: Count Orlok
    title: master of the ruined chapel
    address: [wanderer, my little candle]     # how this NPC addresses the player (replaces the species')
    forbid: [flee]                              # rules overrides: actions this NPC never takes
    ---
    Free prose: who they are, what they want. It is the persona's lore.

The persona's rules are the species' rules plus its overrides: a forbidden action scores 0, and when
that removes the species' top choice, the best remaining action becomes the top (scores rescaled
so the best allowed action is 1.0). Persona files sit in a sub-folder, so adding one changes neither
the species' lore version nor any other NPC's.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srl_forge.errors import InputError, raise_all, validation_errors
from srl_forge.hashing import content_hash
from srl_forge.lore import DEFAULT_LORE_LIMITS, LoreLimits, check_document_file, screen_for_injection
from srl_forge.species import discover_species, validate_species_id
from srl_forge.yaml_files import load_yaml

PERSONA_FOLDER = "npcs"
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n?(.*)\Z", re.DOTALL)


class PersonaHeader(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, max_length=80)
    title: str = Field(default="", max_length=160)
    address: tuple[str, ...] = Field(default=(), max_length=12)
    forbid: tuple[str, ...] = ()


class Persona(BaseModel):
    model_config = ConfigDict(frozen=True)
    species: str
    npc: str  # the file's stem: a safe id
    header: PersonaHeader
    description: str
    version: str  # hash of the file

    @property
    def key(self) -> str:
        return f"{self.species}/{self.npc}"

    def introduction(self) -> str:
        title = f", {self.header.title}" if self.header.title else ""
        text = f"You are {self.header.name}{title}, a {self.species}."
        return f"{text} {self.description}".strip() if self.description else text


def persona_path(lore_root: Path, species: str, npc: str) -> Path:
    return lore_root / species / PERSONA_FOLDER / f"{npc}.md"


def load_persona(
    lore_root: Path,
    species: str,
    npc: str,
    actions: tuple[str, ...] | None = None,
    limits: LoreLimits = DEFAULT_LORE_LIMITS,
) -> Persona:
    validate_species_id(species)
    path = persona_path(lore_root, species, npc)
    validate_species_id(npc, path)
    if not path.exists() and not path.is_symlink():
        raise InputError(path, "file", f"no persona file for {species}/{npc}")
    check_document_file(path, lore_root, limits)  # inside the lore root, a regular file, within the size limit
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, "encoding", "persona files must be UTF-8") from exc
    problems: list[InputError] = []  # every problem of the file, reported together
    try:
        screen_for_injection(path, text, "a persona")
    except InputError as exc:
        problems.append(exc)
    match = FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if not match:
        problems.append(InputError(path, "front matter", "a persona file starts with '---', YAML fields, then '---'"))
        raise_all(problems)
    try:
        raw = load_yaml(match.group(1)) or {}
    except yaml.YAMLError as exc:
        problems.append(InputError(path, "front matter", str(exc).splitlines()[0]))
        raise_all(problems)
    try:
        header = PersonaHeader.model_validate(raw)
    except ValidationError as exc:
        header = None
        problems.extend(validation_errors(path, exc, lambda loc: None if loc else "front matter"))
    forbid = raw.get("forbid") if isinstance(raw, dict) and isinstance(raw.get("forbid"), list) else []
    if actions is not None:
        unknown = [a for a in forbid if a not in actions]
        if unknown:
            problems.append(
                InputError(path, "forbid", f"unknown actions {unknown}; the {species} actions are {', '.join(actions)}")
            )
    raise_all(problems)
    description = " ".join(match.group(2).split())[:1200]
    return Persona(species=species, npc=npc, header=header, description=description, version=content_hash(text))


def discover_personas(lore_root: Path) -> list[str]:
    """`species/npc` for every persona file, sorted."""
    keys = []
    for species in discover_species(lore_root):
        folder = lore_root / species / PERSONA_FOLDER
        if folder.is_dir():
            keys += [f"{species}/{p.stem}" for p in sorted(folder.glob("*.md"))]
    return keys


def split_persona_key(key: str) -> tuple[str, str]:
    species, _, npc = key.partition("/")
    validate_species_id(species, "npc partition")
    validate_species_id(npc, "npc partition")
    return species, npc


def persona_action_scores(scores: dict[str, float], persona: Persona) -> dict[str, float]:
    """The species' graded scores with the persona's forbidden actions at 0, rescaled so the best
    remaining action scores 1.0 (unchanged when the species' top choice is allowed)."""
    out = {a: (0.0 if a in persona.header.forbid else s) for a, s in scores.items()}
    best = max(out.values(), default=0.0)
    if 0 < best < 1.0:
        out = {a: round(s / best, 4) for a, s in out.items()}
    return out
