"""What the tests share that is not a fixture: the checkout's folders, the species and a compact
encounter builder."""

from pathlib import Path

from srl_forge.encounter import Encounter, GameState, Location, NPCState, Player

REPO = Path(__file__).resolve().parent.parent
LORE_ROOT = REPO / "lore"
RULES_ROOT = REPO / "rules"
VOICES_ROOT = REPO / "voices"
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
