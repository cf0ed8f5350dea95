"""What the tests share that is not a fixture: the checkout's folders, the species, a compact encounter
builder, each species' rules engine and the programmatic teachers."""

import socket
import threading
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import httpx2
import openai
import uvicorn
from dagster import DagsterInstance

from serving.server import ServingConfig
from srl_assets.partitions import register_species
from srl_assets.resources import TeachersResource
from srl_forge.encounter import Encounter, GameState, Location, NPCState, Player
from srl_forge.encounters import SampledEncounter
from srl_forge.lore import SpeciesLore, load_species_lore
from srl_forge.player_logs import read_player_logs
from srl_forge.rulebook import Rulebook, load_rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.team import Teachers, TeachersConfig

REPO = Path(__file__).resolve().parent.parent
LORE_ROOT = REPO / "lore"
RULES_ROOT = REPO / "rules"
VOICES_ROOT = REPO / "voices"
SEED = REPO / "game_state" / "seed.yaml"
SPECIES = ["vampire", "werewolf", "zombie", "ghoul", "lich"]
# a lore document every loader accepts
VALID_LORE_DOCUMENT = """---
title: A Test
topic: behaviour
source: "Test Book"
canon_version: "1.0"
---
Some prose.

## Traits
- Sneaky.
"""


def make_encounter(species: str, game=None, npc=None, player=None, location=None) -> Encounter:
    """An encounter with quiet defaults (night, waxing moon, a lone villager approaching on a road)."""
    return Encounter(
        game=GameState(**(game or {})),
        npc=NPCState(species=species, **(npc or {})),
        player=Player(**(player or {})),
        location=Location(**(location or {})),
    )


@cache
def species_setup(species: str) -> tuple[SpeciesLore, Rulebook, RulesEngine]:
    """The checkout's lore, rulebook and rules engine for `species` (read once per test session)."""
    lore = load_species_lore(LORE_ROOT, species)
    rulebook = load_rulebook(RULES_ROOT, species, lore.document_ids)
    return lore, rulebook, RulesEngine(rulebook)


def sampled_encounter(encounter: Encounter, split: str = "train") -> SampledEncounter:
    return SampledEncounter(encounter_id=encounter.encounter_id, split=split, origin="designer", encounter=encounter)


def programmatic_teachers(species: str, seed: int = 0) -> Teachers:
    """The embedded default team (no endpoint, so no cache is ever written)."""
    _, rulebook, _ = species_setup(species)
    return Teachers(TeachersConfig(seed=seed), Path("/nonexistent-cache"), VOICES_ROOT, rulebook)


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every row of the markdown tables in `markdown` (header rows included, rules left out)."""
    rows = []
    for line in markdown.splitlines():
        line = line.strip()
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def has_row(markdown: str, *leading: str) -> bool:
    """Whether a table row of `markdown` begins with these cells."""
    return any(row[: len(leading)] == list(leading) for row in table_rows(markdown))


def forge_with_teachers(project_copy: Path, home: Path, teachers_file: Path, **teacher_options):
    """The code location's resources on a project copy, with the teachers from `teachers_file` (options such as
    `outage_retries` passed on), and an ephemeral instance that knows the species."""
    # importing it builds the code location's `defs` from the environment, which bench.teachers does not set up
    from srl_assets.definitions import build_definitions  # noqa: PLC0415 - see above

    defs = build_definitions(
        home=home,
        lore_root=project_copy / "lore",
        rules_root=project_copy / "rules",
        game_state_seed=project_copy / "game_state" / "seed.yaml",
    )
    resources = dict(defs.resources)
    resources["teachers"] = TeachersResource(
        config_file=str(teachers_file),
        voices_root=resources["teachers"].voices_root,
        cache_dir=str(home / "teacher_cache"),
        **teacher_options,
    )
    instance = DagsterInstance.ephemeral()
    register_species(instance, project_copy / "lore")
    return instance, resources


@contextmanager
def serving_on_loopback(app):
    """An ASGI app under uvicorn on a free 127.0.0.1 port for the block; yields the port."""

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if uv.started:
            break
        time.sleep(0.05)
    try:
        yield port
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def local_serving_config(folder: Path, tiers: Path, model_cache: Path, **fields):
    """A `ServingConfig` over one test folder (registry, artifacts, logs and game state in it) and the
    checkout's lore, rules and voices."""

    return ServingConfig(
        registry=str(folder / "registry.duckdb"),
        artifacts_root=str(folder / "artifacts"),
        player_logs_root=str(folder / "player_logs"),
        game_state_db=str(folder / "state.duckdb"),
        lore_root=str(LORE_ROOT),
        rules_root=str(RULES_ROOT),
        voices_root=str(VOICES_ROOT),
        tiers_file=str(tiers),
        model_cache=str(model_cache),
        **fields,
    )


class RunningServer:
    """A `ForgeServer` answering on loopback, with what its tests read: clients, its logs, its metrics."""

    def __init__(self, server, port, engine):
        self.server, self.port, self.engine = server, port, engine
        self.url = f"http://127.0.0.1:{port}"

    def client(self, api_key: str = "local", **kwargs):
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, **kwargs)

    def records(self, species: str = "vampire"):
        records, problems = read_player_logs(Path(self.server.config.player_logs_root), species)
        assert not problems
        return records

    def metrics(self, headers: dict | None = None) -> str:
        response = httpx2.get(f"{self.url}/metrics", headers=headers or {})
        assert response.status_code == 200
        return response.text


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
