import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from srl_forge.encounter import Encounter, GameState, Location, NPCState, Player  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LORE_ROOT = REPO / "lore"
RULES_ROOT = REPO / "rules"
SEED = REPO / "game_state" / "seed.yaml"
SPECIES = ["vampire", "werewolf", "zombie", "ghoul", "lich"]


def make_encounter(species: str, game=None, npc=None, player=None, location=None) -> Encounter:
    """An encounter with quiet defaults (night, waxing moon, a lone villager approaching on a road)."""
    return Encounter(
        game=GameState(**(game or {})),
        npc=NPCState(species=species, **(npc or {})),
        player=Player(**(player or {})),
        location=Location(**(location or {})),
    )


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """A writable copy of lore/, rules/ and the game-state seed, for tests that edit inputs."""
    root = tmp_path / "project"
    shutil.copytree(LORE_ROOT, root / "lore")
    shutil.copytree(RULES_ROOT, root / "rules")
    (root / "game_state").mkdir()
    shutil.copy(SEED, root / "game_state" / "seed.yaml")
    return root
