"""Properties of the rules engine and the rulebook loader over generated input (hypothesis): the
verifier accepts what the engine decides, and no encounter or rule file crashes either of them."""

import shutil
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srl_forge.encounter import (
    Encounter,
    LocationKind,
    MoonPhase,
    PlayerAction,
    TimeOfDay,
    Weather,
)
from srl_forge.errors import InputError
from srl_forge.lore import load_species_lore
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from tests.helpers import LORE_ROOT, RULES_ROOT, SPECIES

ITEMS = ["garlic", "silver", "holy_symbol", "torch", "wolfsbane", "gold", "salt", "mirror", "stake", "bread"]
EVENTS = ["blood_moon", "harvest_festival", "plague", "eclipse", "inquisition"]
FACTIONS = ["villagers", "hunters", "clergy", "merchants", "nobles", "bandits"]


def encounters(species: str):
    literal = lambda t: st.sampled_from(typing.get_args(t))  # noqa: E731
    unit = st.floats(0.0, 1.0, allow_nan=False)
    return st.builds(
        lambda game, npc, player, location: Encounter.model_validate(
            {"game": game, "npc": npc, "player": player, "location": location}
        ),
        st.fixed_dictionaries(
            {
                "time_of_day": literal(TimeOfDay),
                "moon_phase": literal(MoonPhase),
                "weather": literal(Weather),
                "live_events": st.lists(st.sampled_from(EVENTS), max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {
                "species": st.just(species),
                "tier": st.integers(1, 3),
                "hunger": unit,
                "health": unit,
                "allies": st.integers(0, 6),
            }
        ),
        st.fixed_dictionaries(
            {
                "action": literal(PlayerAction),
                "items": st.lists(st.sampled_from(ITEMS), max_size=4),
                "faction": st.sampled_from(FACTIONS),
                "party_size": st.integers(1, 8),
                "utterance": st.text(max_size=80),
            }
        ),
        st.fixed_dictionaries({"kind": literal(LocationKind), "invited": st.booleans(), "consecrated": st.booleans()}),
    )


ENGINES = {s: RulesEngine(load_rulebook(RULES_ROOT, s, load_species_lore(LORE_ROOT, s).document_ids)) for s in SPECIES}


@pytest.mark.parametrize("species", SPECIES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_verifier_accepts_what_the_engine_decides(species, data):
    engine = ENGINES[species]
    encounter = data.draw(encounters(species))
    decision = engine.decide(encounter)
    assert decision.acceptable or decision.conflicts  # there is always something a monster may do
    if not decision.conflicts:
        # one best action, or a tie the engine names instead of picking arbitrarily
        assert decision.recommended in decision.acceptable if decision.recommended else decision.tied
        assert set(decision.tied) <= set(decision.acceptable)
        for action in decision.acceptable:
            assert engine.verify(encounter, action).passed, (action, engine.verify(encounter, action).reasons)
    for action in decision.forbidden:
        assert not engine.verify(encounter, action).passed
    assert not engine.verify(encounter, "not_an_action").passed


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=12,
)
RULE_KEYS = st.sampled_from(
    [
        "id",
        "source",
        "description",
        "priority",
        "when",
        "require",
        "forbid",
        "prefer",
        "dialogue",
        "events",
        "unknown_field",
    ]
)


def mutated_rule_files():
    """The shipped vampire rules with random fields of random rules replaced by random values."""
    return st.lists(st.tuples(st.integers(0, 20), RULE_KEYS, VALUES), min_size=1, max_size=4)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=mutated_rule_files())
def test_random_rule_files_load_or_fail_naming_the_file_and_field(tmp_path_factory, mutations):
    root = tmp_path_factory.mktemp("rules")
    for name in ("global.yaml", "vampire.yaml"):
        shutil.copy(RULES_ROOT / name, root / name)
    data = yaml.safe_load((root / "vampire.yaml").read_text())
    for index, key, value in mutations:
        data["rules"][index % len(data["rules"])][key] = value
    (root / "vampire.yaml").write_text(yaml.safe_dump(data))
    lore = load_species_lore(LORE_ROOT, "vampire")
    try:
        rulebook = load_rulebook(root, "vampire", lore.document_ids)
    except InputError as err:
        assert err.source.endswith(".yaml") and err.field
        return
    engine = RulesEngine(rulebook)  # whatever loads can decide
    engine.decide(Encounter.model_validate({"game": {}, "npc": {"species": "vampire"}, "player": {}, "location": {}}))
