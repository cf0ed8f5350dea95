"""Persona rows (Tier 3): the species' RLVR rows retold for one named NPC.

Each row keeps the encounter and the verifier's columns, with the persona's introduction in the
system prompt and the persona's rules overrides applied to the graded scores (a forbidden action
scores 0; the best remaining action becomes the top). The persona's expert answer — the top allowed
action and a line composed in the persona's voice — is the SFT text that teaches the voice before
GRPO; the rewards stay the verifiable ones.
"""

from __future__ import annotations

import random

from srl_forge.encounter import Encounter
from srl_forge.grading import action_scores
from srl_forge.personas import Persona, persona_action_scores
from srl_forge.policy import assess_text, render_answer, rlvr_prompt
from srl_forge.rules_engine import RulesEngine
from srl_forge.teachers.lines import Voice, compose_line
from srl_forge.teachers.programmatic import applied_rules_text
from training.outcome_dataset import action_score_column


def persona_voice(voice: Voice, persona: Persona) -> Voice:
    return voice.model_copy(update={"address": persona.header.address}) if persona.header.address else voice


def persona_row(row: dict, persona: Persona, engine: RulesEngine, voice: Voice) -> dict:
    encounter = Encounter.model_validate(row["encounter"])
    decision = engine.decide(encounter)
    scores = persona_action_scores(action_scores(decision, engine.vocabulary), persona)
    best = max(scores.values(), default=0.0)
    top = sorted(a for a, s in scores.items() if s == best and s > 0)
    action = next((a for a in decision.acceptable if a in top), top[0] if top else engine.vocabulary[0])
    markers = decision.dialogue.voice_markers()
    line = compose_line(
        persona_voice(voice, persona),
        encounter,
        action,
        decision.dialogue,
        random.Random(f"{persona.key}:{row['row_id']}"),
        markers,
    )
    # the species' answer (`training.rlvr.decision_text`): the facts, then the rules, so the persona stage trains
    # the format the species adapter it starts from writes
    thought = f"{assess_text(encounter)} {applied_rules_text(decision)}"
    if decision.recommended and decision.recommended != action and decision.recommended in persona.header.forbid:
        thought += f" {persona.header.name} never chooses {decision.recommended}."
    return {
        **row,
        "row_id": f"{persona.npc}:{row['row_id']}",
        "prompt": rlvr_prompt(encounter, engine.vocabulary, persona.introduction()),
        "action_scores": action_score_column(scores),
        "top_actions": top,
        "acceptable_actions": [a for a in row["acceptable_actions"] if a not in persona.header.forbid],
        "completion_text": render_answer(thought, action, line),
    }
