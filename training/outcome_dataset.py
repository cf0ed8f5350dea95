"""RLVR rows: an encounter and the verifier's ground truth, no expert text.

Every column a reward part reads is computed here, once, by the rules engine and
`srl_forge.grounding`: the graded score of every action, the dialogue constraints, the encounter's
grounding terms (less the species' own voice markers), the player's words and the species' stock
phrases. Evaluation builds the same rows for the held-out split.
"""

from __future__ import annotations

import json

from srl_forge.encounters import SampledEncounter
from srl_forge.grading import action_scores, label_decision, top_actions
from srl_forge.grounding import grounding_terms
from srl_forge.policy import rlvr_prompt
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.lines import Voice


def outcome_row(sampled: SampledEncounter, engine: RulesEngine, voice: Voice | None = None) -> dict:
    """`voice`: the species' voice file, whose stock phrases the originality reward compares against."""
    encounter = sampled.encounter
    decision = engine.decide(encounter)
    label = label_decision(decision, engine.rulebook)
    markers = [m for _, ms in decision.dialogue.markers_any for m in ms]
    return {
        "row_id": sampled.encounter_id,
        "encounter_id": sampled.encounter_id,
        "species": encounter.species,
        "split": sampled.split,
        "prompt": rlvr_prompt(encounter, engine.vocabulary),
        "encounter_json": encounter.model_dump_json(),
        "acceptable_actions": list(decision.acceptable),
        "recommended_action": decision.recommended,
        "top_actions": list(top_actions(decision)),
        "action_scores_json": json.dumps(action_scores(decision, engine.vocabulary)),
        "forbidden_actions": sorted(decision.forbidden),
        "dialogue_constraints_json": decision.dialogue.model_dump_json(),
        "grounding_terms_json": json.dumps(grounding_terms(encounter, exclude=markers)),
        "player_utterance": encounter.player.utterance,
        "stock_lines": voice.stock_for(encounter.player.faction) if voice else [],
        "fired_rules": decision.fired_rule_ids,
        "has_conflict": bool(decision.conflicts),
        "contested": label.contested,
        "open": label.open,
        "near_miss_of": sampled.near_miss_of,
    }
