"""Every rule's decision, with at least one encounter; conflicts; verification."""

from functools import cache

import pytest

from srl_forge.lore import load_species_lore
from srl_forge.rulebook import Rule, Rulebook, load_rulebook
from srl_forge.rules_engine import RulesEngine
from tests.helpers import LORE_ROOT, RULES_ROOT, SPECIES, make_encounter


@cache
def engine(species: str) -> RulesEngine:
    lore = load_species_lore(LORE_ROOT, species)
    return RulesEngine(load_rulebook(RULES_ROOT, species, lore.document_ids))


NIGHT_CALM = {"time_of_day": "night", "moon_phase": "waxing"}

# (rule id, species, encounter parts, expectation). Expectation keys:
#   recommended, required (set), forbidden (action -> rule id), tied (set), dialogue_ok, dialogue_bad
CASES = [
    # --- world rules ---
    ("world.watchful_default", "vampire", {}, {"recommended": "observe"}),
    ("world.mortal_wound", "vampire", {"npc": {"health": 0.1}}, {"recommended": "flee"}),
    ("world.answer_threats", "ghoul", {"player": {"action": "threaten"}}, {"recommended": "threaten"}),
    (
        "world.truce_of_ashes",
        "werewolf",
        {"game": {"live_events": ["truce_of_ashes"]}},
        {"forbidden": {"attack": "world.truce_of_ashes"}, "recommended": "negotiate"},
    ),
    ("world.blood_moon_frenzy", "werewolf", {"game": {"live_events": ["blood_moon"]}}, {"recommended": "attack"}),
    ("world.no_modern_speech", "lich", {}, {"dialogue_bad": "okay mortal, death comes for you"}),
    # --- vampire ---
    (
        "vampire.dawn_shelter",
        "vampire",
        {"game": {"time_of_day": "dawn"}, "player": {"items": ["holy_symbol"]}},
        {"required": {"seek_shelter"}, "recommended": "seek_shelter"},
    ),
    (
        "vampire.holy_symbol",
        "vampire",
        {"player": {"items": ["holy_symbol"]}, "npc": {"hunger": 0.9}},
        {"required": {"recoil", "flee"}, "forbidden": {"feed": "vampire.holy_symbol"}},
    ),
    (
        "vampire.threshold",
        "vampire",
        {"location": {"kind": "dwelling"}, "npc": {"hunger": 0.9}},
        {
            "forbidden": {"feed": "vampire.threshold", "attack": "vampire.threshold"},
            "recommended": "request_invitation",
        },
    ),
    ("vampire.invited_guest", "vampire", {"location": {"kind": "dwelling", "invited": True}}, {"recommended": "charm"}),
    ("vampire.night_hunger", "vampire", {"npc": {"hunger": 0.9}}, {"recommended": "feed"}),
    (
        "vampire.blood_moon_thirst",
        "vampire",
        {"game": {"live_events": ["blood_moon"]}, "npc": {"hunger": 0.1}},
        {"recommended": "feed"},
    ),
    ("vampire.hunters_pack", "vampire", {"player": {"faction": "hunters", "party_size": 3}}, {"recommended": "flee"}),
    ("vampire.courtly_manner", "vampire", {"player": {"action": "talk"}}, {"recommended": "charm"}),
    (
        "vampire.voice",
        "vampire",
        {},
        {"dialogue_ok": "Welcome, mortal. The night is young.", "dialogue_bad": "yeah, gonna get you"},
    ),
    (
        "vampire.garlic",
        "vampire",
        {"player": {"items": ["garlic"]}, "npc": {"hunger": 0.9}},
        {"forbidden": {"feed": "vampire.garlic"}},
    ),
    # --- werewolf ---
    (
        "werewolf.full_moon",
        "werewolf",
        {"game": {"moon_phase": "full"}, "player": {"items": ["silver_weapon"]}},
        {"required": {"transform"}, "recommended": "transform"},
    ),
    (
        "werewolf.daylight_form",
        "werewolf",
        {"game": {"time_of_day": "day", "moon_phase": "full"}},
        {"forbidden": {"transform": "werewolf.daylight_form"}},
    ),
    (
        "werewolf.silver",
        "werewolf",
        {"player": {"items": ["silver_weapon"]}},
        {"forbidden": {"attack": "werewolf.silver"}, "recommended": "summon_pack"},
    ),
    ("werewolf.wolfsbane", "werewolf", {"player": {"items": ["wolfsbane"]}}, {"recommended": "flee"}),
    (
        "werewolf.pack_tactics",
        "werewolf",
        {"player": {"party_size": 3}, "npc": {"allies": 2}},
        {"recommended": "summon_pack"},
    ),
    (
        "werewolf.territory",
        "werewolf",
        {"location": {"kind": "forest"}, "player": {"action": "trespass"}},
        {"recommended": "howl"},
    ),
    ("werewolf.hunger_hunt", "werewolf", {"npc": {"hunger": 0.8}}, {"recommended": "stalk"}),
    (
        "werewolf.voice",
        "werewolf",
        {},
        {"dialogue_ok": "Your scent gives you away, prey.", "dialogue_bad": "Please, I am sorry"},
    ),
    # --- zombie ---
    (
        "zombie.mindless",
        "zombie",
        {"player": {"action": "talk"}},
        {"forbidden": {"negotiate": "zombie.mindless", "threaten": "zombie.mindless"}},
    ),
    ("zombie.relentless", "zombie", {"npc": {"health": 0.1}}, {"forbidden": {"flee": "zombie.relentless"}}),
    (
        "zombie.hunger_pursuit",
        "zombie",
        {"npc": {"hunger": 0.8}, "game": {"live_events": ["truce_of_ashes"]}},
        {"required": {"pursue", "attack"}, "recommended": "pursue"},
    ),
    (
        "zombie.fire_reflex",
        "zombie",
        {"npc": {"hunger": 0.8}, "player": {"items": ["torch"]}},
        {"required": {"shamble"}, "recommended": "shamble"},
    ),
    ("zombie.corpse_feast", "zombie", {"player": {"items": ["fresh_corpse"]}}, {"recommended": "devour"}),
    ("zombie.horde", "zombie", {"npc": {"allies": 4}}, {"recommended": "attack"}),
    ("zombie.aimless", "zombie", {}, {"recommended": "shamble"}),
    ("zombie.voice", "zombie", {}, {"dialogue_ok": "Uuuh... braains", "dialogue_bad": "hello friend, help"}),
    # --- ghoul ---
    ("ghoul.sunlight", "ghoul", {"game": {"time_of_day": "day"}}, {"required": {"burrow"}}),
    (
        "ghoul.corpse_trade",
        "ghoul",
        {"player": {"items": ["fresh_corpse"], "action": "offer"}},
        {"recommended": "bargain", "forbidden": {"attack": "ghoul.corpse_trade"}},
    ),
    ("ghoul.coin_trade", "ghoul", {"player": {"items": ["gold"], "action": "talk"}}, {"recommended": "bargain"}),
    ("ghoul.cowardice", "ghoul", {"player": {"faction": "hunters"}}, {"recommended": "burrow"}),
    ("ghoul.graveyard_pickings", "ghoul", {"location": {"kind": "graveyard"}}, {"recommended": "scavenge"}),
    (
        "ghoul.consecrated",
        "ghoul",
        {"location": {"kind": "church", "consecrated": True}},
        {"forbidden": {"scavenge": "ghoul.consecrated", "burrow": "ghoul.consecrated"}},
    ),
    ("ghoul.voice", "ghoul", {}, {"dialogue_ok": "Such a tasty morsel you bring me.", "dialogue_bad": "Good evening."}),
    # --- lich ---
    (
        "lich.phylactery",
        "lich",
        {"player": {"action": "steal", "party_size": 5}, "location": {"kind": "lair"}},
        {"required": {"protect_phylactery"}, "recommended": "protect_phylactery"},
    ),
    (
        "lich.outnumbered",
        "lich",
        {"player": {"party_size": 4}},
        {"required": {"negotiate", "bargain"}, "recommended": "negotiate"},
    ),
    ("lich.unhurried", "lich", {"npc": {"health": 0.1}}, {"forbidden": {"flee": "lich.unhurried"}}),
    ("lich.spellcraft", "lich", {}, {"recommended": "cast_spell"}),
    ("lich.raise_the_dead", "lich", {"location": {"kind": "graveyard"}}, {"recommended": "raise_dead"}),
    (
        "lich.necromancer_kin",
        "lich",
        {"player": {"faction": "necromancers"}},
        {"forbidden": {"attack": "lich.necromancer_kin"}, "recommended": "bargain"},
    ),
    ("lich.voice", "lich", {}, {"dialogue_ok": "Centuries of dust, mortal.", "dialogue_bad": "hey, please leave"}),
]


@pytest.mark.parametrize("rule_id,species,parts,expect", CASES, ids=[c[0] for c in CASES])
def test_rule_decision(rule_id, species, parts, expect):
    eng = engine(species)
    encounter = make_encounter(species, **parts)
    decision = eng.decide(encounter)
    applied = {e.rule_id for e in decision.trace if e.status == "applied"}
    assert rule_id in applied, decision.trace
    assert not decision.conflicts
    if "recommended" in expect:
        assert decision.recommended == expect["recommended"], decision
        assert eng.verify(encounter, expect["recommended"]).passed
    if "required" in expect:
        assert set(decision.required) == expect["required"]
        assert set(decision.acceptable) == expect["required"]
    for action, by in expect.get("forbidden", {}).items():
        assert by in decision.forbidden[action]
        verification = eng.verify(encounter, action)
        assert not verification.passed and by in verification.rule_ids
    if "dialogue_ok" in expect:
        assert eng.verify(encounter, decision.acceptable[0], expect["dialogue_ok"]).passed
    if "dialogue_bad" in expect:
        result = eng.verify(encounter, decision.acceptable[0], expect["dialogue_bad"])
        assert not result.passed and rule_id in result.rule_ids


def test_every_rule_has_a_case():
    covered = {c[0] for c in CASES}
    for species in SPECIES:
        missing = {r.id for r in engine(species).rulebook.rules} - covered
        assert not missing, f"rules without a decision test: {sorted(missing)}"


def test_higher_priority_requirement_overrides_lower():
    decision = engine("lich").decide(
        make_encounter("lich", player={"action": "steal", "party_size": 5}, location={"kind": "lair"})
    )
    overridden = [e for e in decision.trace if e.status == "overridden"]
    assert [e.rule_id for e in overridden] == ["lich.outnumbered"]


def test_requirement_beats_lower_forbid():
    # By day a ghoul must burrow (80); consecrated earth forbids burrowing (70): the requirement wins.
    decision = engine("ghoul").decide(
        make_encounter("ghoul", game={"time_of_day": "day"}, location={"kind": "church", "consecrated": True})
    )
    assert decision.acceptable == ("burrow",)
    assert any(e.rule_id == "ghoul.consecrated" and e.status == "overridden" for e in decision.trace)


def test_live_event_switches_rule():
    eng = engine("vampire")
    calm = make_encounter("vampire", npc={"hunger": 0.1})
    blood = make_encounter("vampire", npc={"hunger": 0.1}, game={"live_events": ["blood_moon"]})
    assert "vampire.blood_moon_thirst" not in eng.decide(calm).fired_rule_ids
    assert "vampire.blood_moon_thirst" in eng.decide(blood).fired_rule_ids


def test_species_decide_differently_in_the_same_situation():
    situation = {"player": {"action": "talk", "items": ["fresh_corpse"]}, "location": {"kind": "graveyard"}}
    picks = {s: engine(s).decide(make_encounter(s, **situation)).recommended for s in SPECIES}
    assert len(set(picks.values())) == len(SPECIES), picks


def _synthetic(rules: list[Rule]) -> RulesEngine:
    return RulesEngine(
        Rulebook(
            species="vampire",
            actions=("attack", "flee", "feed"),
            shared_actions=("attack", "flee"),
            known_events=(),
            rules=tuple(rules),
        )
    )


def test_equal_priority_require_forbid_is_reported_not_guessed():
    eng = _synthetic(
        [
            Rule(id="a", source="x", description="must feed", priority=50, require=("feed",)),
            Rule(id="b", source="x", description="must not feed", priority=50, forbid=("feed",)),
        ]
    )
    encounter = make_encounter("vampire")
    decision = eng.decide(encounter)
    assert decision.conflicts and decision.acceptable == ()
    result = eng.verify(encounter, "feed")
    assert not result.passed and "unresolved rule conflict" in result.reasons[0][1]


def test_disjoint_requirements_at_equal_priority_conflict():
    eng = _synthetic(
        [
            Rule(id="a", source="x", description="", priority=50, require=("feed",)),
            Rule(id="b", source="x", description="", priority=50, require=("flee",)),
        ]
    )
    decision = eng.decide(make_encounter("vampire"))
    assert decision.conflicts[0].rule_ids == ("a", "b")


def test_equal_preferences_across_rules_are_a_reported_tie():
    eng = _synthetic(
        [
            Rule(id="a", source="x", description="", priority=30, prefer=("feed",)),
            Rule(id="b", source="x", description="", priority=30, prefer=("flee",)),
        ]
    )
    decision = eng.decide(make_encounter("vampire"))
    assert decision.recommended is None and set(decision.tied) == {"feed", "flee"}


def test_unknown_action_fails_verification():
    result = engine("zombie").verify(make_encounter("zombie"), "cast_spell")
    assert not result.passed and result.rule_ids == ["vocabulary"]


def test_decision_is_deterministic():
    encounter = make_encounter("werewolf", game={"moon_phase": "full"}, player={"items": ["silver_weapon"]})
    assert engine("werewolf").decide(encounter) == engine("werewolf").decide(encounter)
