"""RLVR rows: an encounter and the verifier's ground truth, no expert text."""

from __future__ import annotations

from srl_forge.encounters import SampledEncounter
from srl_forge.rules_engine import RulesEngine
from training.prompts import rlvr_prompt


def outcome_row(sampled: SampledEncounter, engine: RulesEngine) -> dict:
    decision = engine.decide(sampled.encounter)
    return {
        "row_id": sampled.encounter_id,
        "encounter_id": sampled.encounter_id,
        "species": sampled.encounter.species,
        "split": sampled.split,
        "prompt": rlvr_prompt(sampled.encounter, engine.vocabulary),
        "encounter_json": sampled.encounter.model_dump_json(),
        "acceptable_actions": list(decision.acceptable),
        "recommended_action": decision.recommended,
        "forbidden_actions": sorted(decision.forbidden),
        "dialogue_constraints_json": decision.dialogue.model_dump_json(),
        "fired_rules": decision.fired_rule_ids,
        "has_conflict": bool(decision.conflicts),
    }
