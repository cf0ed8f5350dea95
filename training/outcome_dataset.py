"""RLVR rows: an encounter and the verifier's ground truth, no expert text.

Every column a reward part reads is computed here, once, by the rules engine and
`srl_forge.grounding`: the graded score of every action, the dialogue constraints, the encounter's
grounding terms (less the species' own voice markers), the player's words and the species' stock
phrases. Evaluation builds the same rows for the held-out split.

Columns are native parquet types (structs and lists, no JSON strings): `encounter` is the encounter's
fields, `action_scores` a list of {action, score}, `dialogue_constraints` the engine's constraints,
`grounding_terms` every reference kind with its surface forms (empty when the encounter has none).
`OutcomeRow` reads a row back with attributes; `upgrade_legacy_columns` reads rows stored before.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from srl_forge.encounter import Encounter
from srl_forge.encounters import SampledEncounter
from srl_forge.grading import action_scores, label_decision, top_actions
from srl_forge.grounding import GROUNDING_KINDS, grounding_terms
from srl_forge.policy import rlvr_prompt
from srl_forge.rules_engine import DialogueConstraints, RulesEngine
from srl_forge.teachers.lines import Voice


class ActionScore(BaseModel):
    model_config = ConfigDict(frozen=True)
    action: str
    score: float


def action_score_column(scores: dict[str, float]) -> list[dict]:
    return [{"action": a, "score": float(v)} for a, v in scores.items()]


def scores_by_action(column) -> dict[str, float]:
    """An `action_scores` column value (as parquet or `datasets` hands it over) as {action: score}."""
    return {s["action"]: s["score"] for s in column}


def grounding_column(terms: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every reference kind, so each row has one struct shape."""
    return {kind: list(terms.get(kind, [])) for kind in GROUNDING_KINDS}


class OutcomeRow(BaseModel):
    """An RLVR row read back (`OutcomeRow.model_validate(row)`); extra columns (a persona row's) are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")
    row_id: str
    encounter_id: str
    species: str
    split: str
    prompt: list[dict]
    encounter: Encounter
    acceptable_actions: list[str]
    recommended_action: str | None
    top_actions: list[str]
    action_scores: list[ActionScore]
    forbidden_actions: list[str]
    dialogue_constraints: DialogueConstraints
    grounding_terms: dict[str, list[str]]
    player_utterance: str | None
    stock_lines: list[str]

    def score_of(self) -> dict[str, float]:
        return {s.action: s.score for s in self.action_scores}


def outcome_row(sampled: SampledEncounter, engine: RulesEngine, voice: Voice | None = None) -> dict:
    """`voice`: the species' voice file, whose stock phrases the originality reward compares against."""
    encounter = sampled.encounter
    decision = engine.decide(encounter)
    label = label_decision(decision, engine.rulebook)
    markers = decision.dialogue.voice_markers()
    return {
        "row_id": sampled.encounter_id,
        "encounter_id": sampled.encounter_id,
        "species": encounter.species,
        "split": sampled.split,
        "prompt": rlvr_prompt(encounter, engine.vocabulary),
        "encounter": encounter.model_dump(mode="json"),
        "acceptable_actions": list(decision.acceptable),
        "recommended_action": decision.recommended,
        "top_actions": list(top_actions(decision)),
        "action_scores": action_score_column(action_scores(decision, engine.vocabulary)),
        "forbidden_actions": sorted(decision.forbidden),
        "dialogue_constraints": decision.dialogue.model_dump(mode="json"),
        "grounding_terms": grounding_column(grounding_terms(encounter, exclude=markers)),
        "player_utterance": encounter.player.utterance,
        "stock_lines": voice.stock_for(encounter.player.faction) if voice else [],
        "fired_rules": decision.fired_rule_ids,
        "has_conflict": bool(decision.conflicts),
        "contested": label.contested,
        "open": label.open,
        "near_miss_of": sampled.near_miss_of,
    }


LEGACY_JSON_COLUMNS = {  # stored before the columns were native: name -> (native name, decode)
    "encounter_json": ("encounter", json.loads),
    "action_scores_json": ("action_scores", lambda v: action_score_column(json.loads(v))),
    "dialogue_constraints_json": (
        "dialogue_constraints",
        lambda v: DialogueConstraints.model_validate_json(v).model_dump(mode="json"),
    ),
    "grounding_terms_json": ("grounding_terms", lambda v: grounding_column(json.loads(v))),
}


def upgrade_legacy_columns(row: dict) -> dict:
    """A row stored with JSON string columns (datasets written before), with native columns instead, so a
    replay of an older dataset mixes with new rows."""
    if not any(name in row for name in LEGACY_JSON_COLUMNS):
        return row
    out = {k: v for k, v in row.items() if k not in LEGACY_JSON_COLUMNS}
    for name, (native, decode) in LEGACY_JSON_COLUMNS.items():
        if name in row:
            out[native] = decode(row[name])
    return out
