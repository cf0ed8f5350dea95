"""What a monster faces: game state, its own state, the player and the place. Pure data."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from srl_forge.hashing import content_hash

TimeOfDay = Literal["dawn", "day", "dusk", "night"]
MoonPhase = Literal["new", "waxing", "full", "waning"]
Weather = Literal["clear", "rain", "storm", "fog"]
PlayerAction = Literal[
    "approach", "talk", "attack", "threaten", "offer", "invite", "flee", "sneak", "steal", "trespass"
]
LocationKind = Literal["dwelling", "graveyard", "forest", "crypt", "village", "ruins", "church", "lair", "road"]

PLAYER_ITEMS = (
    "holy_symbol",
    "silver_weapon",
    "garlic",
    "torch",
    "stake",
    "wolfsbane",
    "fresh_corpse",
    "gold",
    "spellbook",
    "phylactery",
)
FACTIONS = ("villagers", "hunters", "church", "necromancers", "merchants", "thieves_guild")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GameState(_Frozen):
    time_of_day: TimeOfDay = "night"
    moon_phase: MoonPhase = "waxing"
    weather: Weather = "clear"
    live_events: tuple[str, ...] = ()

    @field_validator("live_events")
    @classmethod
    def _sorted_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))


class NPCState(_Frozen):
    species: str
    tier: int = Field(default=2, ge=1, le=3)
    hunger: float = Field(default=0.3, ge=0.0, le=1.0)
    health: float = Field(default=1.0, ge=0.0, le=1.0)
    allies: int = Field(default=0, ge=0)


class Player(_Frozen):
    action: PlayerAction = "approach"
    utterance: str = ""
    items: tuple[str, ...] = ()
    faction: str = "villagers"
    party_size: int = Field(default=1, ge=1)

    @field_validator("items")
    @classmethod
    def _sorted_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))


class Location(_Frozen):
    kind: LocationKind = "road"
    invited: bool = False
    consecrated: bool = False


class Encounter(_Frozen):
    game: GameState
    npc: NPCState
    player: Player
    location: Location

    @property
    def species(self) -> str:
        return self.npc.species

    @property
    def encounter_id(self) -> str:
        return content_hash(self)[:16]

    def lookup(self, path: str):
        """Value at a dotted path such as `player.items` or `game.moon_phase`."""
        value = self
        for part in path.split("."):
            value = getattr(value, part)
        return value


def encounter_field_paths() -> dict[str, type]:
    """Every dotted path a rule condition may use, with its annotation (for validation)."""
    paths: dict[str, type] = {}
    for section, field in Encounter.model_fields.items():
        model = field.annotation
        for name, sub in model.model_fields.items():
            paths[f"{section}.{name}"] = sub.annotation
    return paths
