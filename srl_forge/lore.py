"""Lore documents: markdown with YAML front matter, parsed into a cited dossier and memory chunks.

A document lives at `lore/<species>/<name>.md` (shared world lore at `lore/_world/<name>.md`) and
starts with front matter:

    ---
    title: Banes of the Blood
    topic: weaknesses          # behaviour | dialogue | decisions | weaknesses | relations
    source: "Hunter's Almanac"
    canon_version: "1.3"
    species: vampire           # optional; must match the folder
    ---

Bullets under `## Traits`, `## Weaknesses`, `## Speech style`, `## Taboos` and `## Facts` become
dossier entries, each citing its document.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srl_forge.artifacts import StoredArtifact
from srl_forge.errors import InputError, raise_all
from srl_forge.hashing import content_hash
from srl_forge.species import SHARED_LORE_FOLDER, check_inside, require_known_species
from srl_forge.text_screen import screened_units
from srl_forge.yaml_files import load_yaml

Topic = Literal["behaviour", "dialogue", "decisions", "weaknesses", "relations"]
TOPICS: tuple[str, ...] = ("behaviour", "dialogue", "decisions", "weaknesses", "relations")
DOSSIER_SECTIONS = {
    "traits": "traits",
    "weaknesses": "weaknesses",
    "speech style": "speech_style",
    "taboos": "taboos",
    "facts": "facts",
}
FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str
    topic: Topic
    source: str
    canon_version: str
    species: str | None = None


class LoreDocument(BaseModel):
    model_config = ConfigDict(frozen=True)
    doc_id: str  # "<folder>/<stem>"
    path: str
    title: str
    topic: Topic
    source: str
    canon_version: str
    body: str
    sections: dict[str, tuple[str, ...]]  # dossier section -> bullets
    content_hash: str

    @property
    def words(self) -> int:
        return len(self.body.split())


class CitedEntry(BaseModel):
    model_config = ConfigDict(frozen=True)
    text: str
    source: str  # lore document id


class Dossier(BaseModel):
    model_config = ConfigDict(frozen=True)
    species: str
    documents: tuple[dict, ...]
    traits: tuple[CitedEntry, ...] = ()
    weaknesses: tuple[CitedEntry, ...] = ()
    speech_style: tuple[CitedEntry, ...] = ()
    taboos: tuple[CitedEntry, ...] = ()
    facts: tuple[CitedEntry, ...] = ()

    def entries(self) -> list[tuple[str, CitedEntry]]:
        return [(section, e) for section in DOSSIER_SECTIONS.values() for e in getattr(self, section)]


class LoreChunk(BaseModel):
    model_config = ConfigDict(frozen=True)
    chunk_id: str
    doc_id: str
    text: str


class SpeciesLore(StoredArtifact):
    model_config = ConfigDict(frozen=True)
    species: str
    documents: tuple[LoreDocument, ...]
    dossier: Dossier

    @property
    def version(self) -> str:
        return content_hash([d.content_hash for d in self.documents])

    @property
    def document_ids(self) -> list[str]:
        return [d.doc_id for d in self.documents]

    def chunks(self) -> list[LoreChunk]:
        """Paragraphs and bullets, each a retrievable memory chunk citing its document."""
        chunks = []
        for doc in self.documents:
            pieces = [p.strip() for p in re.split(r"\n\s*\n", doc.body) if p.strip()]
            texts: list[str] = []
            for piece in pieces:
                lines = piece.splitlines()
                if lines[0].startswith("## "):
                    lines = lines[1:]
                bullets = [ln[2:].strip() for ln in lines if ln.startswith("- ")]
                if bullets:
                    texts.extend(bullets)
                elif lines:
                    texts.append(" ".join(ln.strip() for ln in lines))
            for i, text in enumerate(texts):
                chunks.append(LoreChunk(chunk_id=f"{doc.doc_id}#{i}", doc_id=doc.doc_id, text=f"{doc.title}: {text}"))
        return chunks


class LoreLimits(BaseModel):
    """How large a lore document and one of its sections may be (settings `SRL_FORGE_MAX_LORE_FILE_BYTES`,
    `SRL_FORGE_MAX_LORE_SECTION_CHARS`). The shipped documents are a few kB; a larger one is almost surely a
    mistake, and it costs memory and hours. Sections become prompts and dossier entries, which must stay short."""

    model_config = ConfigDict(frozen=True)
    max_file_bytes: int = Field(default=1_000_000, gt=0)
    max_section_chars: int = Field(default=20_000, gt=0)


DEFAULT_LORE_LIMITS = LoreLimits()


def check_section_sizes(path: Path, body: str, limits: LoreLimits = DEFAULT_LORE_LIMITS) -> None:
    limit = limits.max_section_chars
    for block in re.split(r"(?m)^(?=## )", body):
        if len(block) > limit:
            heading = block.splitlines()[0][3:].strip() if block.startswith("## ") else "(before the first heading)"
            raise InputError(
                path,
                f"section '{heading}'",
                f"{len(block)} characters, over the {limit}-character "
                "limit for a section (SRL_FORGE_MAX_LORE_SECTION_CHARS); split it",
            )


def check_document_file(path: Path, lore_root: Path, limits: LoreLimits = DEFAULT_LORE_LIMITS) -> None:
    """A document may be read: inside the lore root (no symlink leaving it), a regular file, within
    the size limit. InputError names the file."""
    check_inside(path, lore_root)
    if not path.is_file():
        raise InputError(path, "path", "not a regular file (a folder or a broken link named *.md)")
    size, limit = path.stat().st_size, limits.max_file_bytes
    if size > limit:
        raise InputError(
            path,
            "size",
            f"{size} bytes, over the {limit}-byte limit for a lore document (SRL_FORGE_MAX_LORE_FILE_BYTES); split it",
        )


def lore_files(
    lore_root: Path, folder: str, problems: list[InputError] | None = None, limits: LoreLimits = DEFAULT_LORE_LIMITS
) -> list[Path]:
    """The `*.md` documents of one lore folder that may be read (`check_document_file`). A refused file
    raises its InputError, or, given `problems`, is added to it and skipped."""
    directory = lore_root / folder
    if not directory.exists():
        return []
    check_inside(directory, lore_root)
    files = []
    for path in sorted(directory.glob("*.md")):
        try:
            check_document_file(path, lore_root, limits)
        except InputError as exc:
            if problems is None:
                raise
            problems.append(exc)
            continue
        files.append(path)
    return files


def screen_for_injection(path: Path, text: str, kind: str) -> None:
    """Refuse a document with a unit (paragraph, bullet, heading, after joining wrapped lines) that reads as
    instructions to a model (`srl_forge.text_screen`): what lore, rules and personas say is read by the
    teachers and trained on, so it must describe the game, not talk to the model. InputError names the file
    and the line range, with every refused unit and the rule that fired."""
    found = screened_units(text)
    if found:
        (unit, finding), rest = found[0], found[1:]
        others = f" (also {', '.join(u.lines for u, _ in rest)})" if rest else ""
        raise InputError(
            path,
            unit.lines,
            f"reads as instructions to a model ({finding}){others}: "
            f"{kind} is read by the teachers and trained on; describe the game instead",
        )


def parse_lore_file(path: Path, folder: str, limits: LoreLimits = DEFAULT_LORE_LIMITS) -> LoreDocument:
    """Parse one lore document; InputError names the file and the field on bad input."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, "encoding", "lore files must be UTF-8") from exc
    screen_for_injection(path, text, "lore")
    match = FRONT_MATTER.match(text)
    if not match:
        raise InputError(path, "front_matter", "missing front matter: the file must start with '---' ... '---'")
    try:
        raw = load_yaml(match.group(1))
    except yaml.YAMLError as exc:
        raise InputError(path, "front_matter", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(path, "front_matter", "front matter must be a mapping")
    try:
        front = FrontMatter.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "front_matter"
        raise InputError(path, field, err["msg"]) from exc
    if folder != SHARED_LORE_FOLDER and front.species not in (None, folder):
        raise InputError(path, "species", f"front matter says {front.species!r} but the file is in lore/{folder}/")
    for name in ("title", "source", "canon_version"):
        if not getattr(front, name).strip():
            raise InputError(path, name, "must not be empty")
    body = text[match.end() :].strip()
    if not body:
        raise InputError(path, "body", "document has no text after the front matter")
    check_section_sizes(path, body, limits)
    return LoreDocument(
        doc_id=f"{folder}/{path.stem}",
        path=str(path),
        title=front.title,
        topic=front.topic,
        source=front.source,
        canon_version=front.canon_version,
        body=body,
        sections=_sections(body),
        content_hash=content_hash(text),
    )


def _sections(body: str) -> dict[str, tuple[str, ...]]:
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in body.splitlines():
        if line.startswith("## "):
            current = DOSSIER_SECTIONS.get(line[3:].strip().lower())
            continue
        if current and line.startswith("- ") and line[2:].strip():
            sections.setdefault(current, []).append(line[2:].strip())
    return {k: tuple(v) for k, v in sections.items()}


def load_species_lore(lore_root: Path, species: str, limits: LoreLimits = DEFAULT_LORE_LIMITS) -> SpeciesLore:
    """All lore documents of a species (plus shared world lore), and the consolidated dossier."""
    require_known_species(species, lore_root)
    documents: list[LoreDocument] = []
    problems: list[InputError] = []  # every problem of every file, reported together
    for folder in (SHARED_LORE_FOLDER, species):
        try:
            paths = lore_files(lore_root, folder, problems, limits)
        except InputError as exc:
            problems.append(exc)
            continue
        for path in paths:
            try:
                documents.append(parse_lore_file(path, folder, limits))
            except InputError as exc:
                problems.append(exc)
    raise_all(problems)
    own = [d for d in documents if d.doc_id.startswith(f"{species}/")]
    if not own:
        raise InputError(lore_root / species, "documents", "no lore documents (*.md) for this species")
    return SpeciesLore(species=species, documents=tuple(documents), dossier=build_dossier(species, documents))


def build_dossier(species: str, documents: list[LoreDocument]) -> Dossier:
    """The deterministic dossier: every bullet of a dossier section, citing its document."""
    collected: dict[str, list[CitedEntry]] = {s: [] for s in DOSSIER_SECTIONS.values()}
    for doc in documents:
        for section, bullets in doc.sections.items():
            collected[section].extend(CitedEntry(text=b, source=doc.doc_id) for b in bullets)
    return Dossier(
        species=species,
        documents=tuple(
            {
                "id": d.doc_id,
                "title": d.title,
                "topic": d.topic,
                "source": d.source,
                "canon_version": d.canon_version,
                "words": d.words,
            }
            for d in documents
        ),
        **{k: tuple(v) for k, v in collected.items()},
    )


def lore_source_version(lore_root: Path, species: str, limits: LoreLimits = DEFAULT_LORE_LIMITS) -> str:
    """Hash of a species' lore files as they are on disk (shared world lore included), unparsed.

    Cheap enough for a sensor to call every tick; equal to nothing else, only compared to itself.
    """
    digests = []
    for folder in (SHARED_LORE_FOLDER, species):
        try:
            for path in lore_files(lore_root, folder, limits=limits):
                digests.append((f"{folder}/{path.name}", content_hash(path.read_bytes())))
        except (InputError, OSError) as exc:
            # a refused or unreadable file is part of the version (so the asset runs and names it),
            # never a crash of the sensor that watches every species
            digests.append((folder, f"refused: {exc}"))
    return content_hash(digests)


# --- what a usable lore folder has (the `lore_schema_and_coverage` check) ---------------------

MIN_DOCUMENTS = 4
REQUIRED_SECTIONS = ("traits", "weaknesses", "speech_style", "facts")


def lore_problems(species_lore: SpeciesLore) -> list[str]:
    """Why a species' lore is too thin to train on: too few documents, a topic or dossier section missing."""
    own = [d for d in species_lore.documents if d.doc_id.startswith(f"{species_lore.species}/")]
    problems = []
    if len(own) < MIN_DOCUMENTS:
        problems.append(f"{len(own)} documents, at least {MIN_DOCUMENTS} needed")
    missing = sorted(set(TOPICS) - {d.topic for d in own})
    if missing:
        problems.append(f"no document on: {', '.join(missing)}")
    empty = [s for s in REQUIRED_SECTIONS if not getattr(species_lore.dossier, s)]
    if empty:
        problems.append(f"dossier sections without entries: {', '.join(empty)}")
    return problems
