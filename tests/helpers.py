"""What the tests share that is not a fixture: the checkout's folders, the species and a compact
encounter builder."""

from pathlib import Path

from srl_forge.encounter import Encounter, GameState, Location, NPCState, Player

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
