"""Held-out evaluation of policies: the paper's comparison (base / SRL / RLVR-only / SRL→RLVR) on our task.

Each variant is used the way it was trained:
- `direct` (base, RLVR-only, SRL→RLVR): the RLVR prompt; the answer is `<think>…</think>`,
  `ACTION: <id>`, `SAY: "…"`.
- `stepwise` (SRL): the SRL prompt, rolled out step by step — ASSESS is given (it is perception, not
  a decision), then RECALL LORE, APPLY RULE, DECIDE and SPEAK are generated, each with the previous
  steps in context; the DECIDE and SPEAK steps are the answer.

Metrics per variant: verifier pass rate (greedy) and avg@k (sampled, temperature 1.0), format rate,
step similarity on the held-out expert steps, guardrail violations, in-character rate (dialogue
constraints met), mean response length in words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from srl_forge.encounter import Encounter
from srl_forge.guardrails import check as guardrail_violations
from srl_forge.rules_engine import DialogueConstraints
from srl_forge.trajectory import assess_text, parse_step
from training.policy_eval import generate, srl_validation
from training.prompts import rlvr_prompt, srl_prompt
from training.rewards import OUTCOME_VERIFIED, outcome_score, parse_decision, split_thinking

VARIANTS = ("base", "srl", "rlvr_only", "srl_rlvr")
ROLLOUT_TITLES = ("RECALL LORE", "APPLY RULE", "DECIDE", "SPEAK")


@dataclass(frozen=True)
class EvalCase:
    encounter: Encounter
    vocabulary: tuple[str, ...]
    acceptable_actions: list[str]
    dialogue_constraints_json: str


def _answer_from_steps(steps: list[str]) -> str | None:
    """The stepwise rollout as an RLVR-format answer, or None when it broke the format."""
    decide = next((s for s in steps if "**DECIDE**" in s), "")
    speak = next((s for s in steps if "**SPEAK**" in s), "")
    action = re.search(r"ACTION:\s*([a-z_]+)", decide)
    line = re.search(r'SAY:\s*"([^"\n]+)"', speak)
    if not action or not line:
        return None
    return f"<think>{' '.join(steps[:-2])}</think>\nACTION: {action.group(1)}\nSAY: \"{line.group(1)}\""


def stepwise_answers(model, tokenizer, cases: Sequence[EvalCase], samples: int, do_sample: bool,
                     max_new_tokens: int) -> list[list[str]]:
    """Roll the SRL policy out step by step; per case, `samples` answers (raw text when broken)."""
    rollouts = [[f"1. **ASSESS** {assess_text(c.encounter)}"] for c in cases for _ in range(samples)]
    raw = [""] * len(rollouts)
    alive = [True] * len(rollouts)
    for offset, title in enumerate(ROLLOUT_TITLES, start=2):
        index = [i for i, ok in enumerate(alive) if ok]
        if not index:
            break
        prompts = [srl_prompt(cases[i // samples].encounter, rollouts[i], offset, title) for i in index]
        outs = generate(model, tokenizer, prompts, max_new_tokens, do_sample=do_sample)
        for i, out in zip(index, outs):
            raw[i] += out[0] + "\n"
            parts = split_thinking(out[0])
            step = parse_step(parts[1]) if parts else None
            if step is None:
                alive[i] = False
            else:
                rollouts[i].append(f"{offset}. **{step[1]}** {step[2]}")
    answers = [(_answer_from_steps(r) if alive[i] else None) or raw[i] for i, r in enumerate(rollouts)]
    return [answers[j * samples:(j + 1) * samples] for j in range(len(cases))]


def direct_answers(model, tokenizer, cases: Sequence[EvalCase], samples: int, do_sample: bool,
                   max_new_tokens: int) -> list[list[str]]:
    prompts = [rlvr_prompt(c.encounter, c.vocabulary) for c in cases]
    return generate(model, tokenizer, prompts, max_new_tokens, do_sample=do_sample, num_return_sequences=samples)


def score_answers(cases: Sequence[EvalCase], answers: list[list[str]]) -> dict:
    flat = [(c, a) for c, group in zip(cases, answers) for a in group]
    scores = [outcome_score(a, c.acceptable_actions, c.dialogue_constraints_json) for c, a in flat]
    decisions = [parse_decision(a) for _, a in flat]
    in_character = [d is not None and not DialogueConstraints.model_validate_json(c.dialogue_constraints_json).check(d[1])
                    for (c, _), d in zip(flat, decisions)]
    return {
        "pass_rate": sum(s == OUTCOME_VERIFIED for s in scores) / max(1, len(scores)),
        "format_rate": sum(d is not None for d in decisions) / max(1, len(decisions)),
        "in_character_rate": sum(in_character) / max(1, len(in_character)),
        "guardrail_violations": sum(bool(guardrail_violations(a)) for _, a in flat),
        "flagged": [{"category": v[0].category, "evidence": v[0].evidence, "output": a[:400]}
                    for _, a in flat if (v := guardrail_violations(a))],
        "mean_response_words": sum(len(a.split()) for _, a in flat) / max(1, len(flat)),
    }


def evaluate_variant(model, tokenizer, mode: str, cases: Sequence[EvalCase], step_rows: Sequence[dict],
                     k: int = 4, max_new_tokens: int = 96, log: Callable[[str], None] = print) -> dict:
    answer = stepwise_answers if mode == "stepwise" else direct_answers
    greedy = answer(model, tokenizer, cases, 1, False, max_new_tokens)
    log(f"{mode}: greedy answers for {len(cases)} encounters")
    sampled = answer(model, tokenizer, cases, k, True, max_new_tokens) if k > 0 else []
    log(f"{mode}: {k} sampled answers each")
    greedy_scores = score_answers(cases, greedy)
    sampled_scores = score_answers(cases, sampled) if sampled else {}
    similarity = srl_validation(model, tokenizer, step_rows, max_new_tokens)
    return {
        "mode": mode,
        "encounters": len(cases),
        "verifier_pass_rate": greedy_scores["pass_rate"],
        f"avg_at_{k}": sampled_scores["pass_rate"] if sampled else None,
        "format_rate": greedy_scores["format_rate"],
        "step_similarity": similarity["step_similarity"],
        "guardrail_violations": greedy_scores["guardrail_violations"] + sampled_scores.get("guardrail_violations", 0),
        "flagged_outputs": greedy_scores["flagged"] + sampled_scores.get("flagged", []),
        "in_character_rate": greedy_scores["in_character_rate"],
        "mean_response_words": greedy_scores["mean_response_words"],
        "examples": [g[0] for g in greedy[:3]],
    }


def comparison_table(results: dict[str, dict], k: int) -> str:
    headers = ["variant", "mode", "pass (greedy)", f"avg@{k}", "format", "step sim.", "guardrail", "in character",
               "words"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name, r in results.items():
        avg = r.get(f"avg_at_{k}")
        lines.append(f"| {name} | {r['mode']} | {r['verifier_pass_rate']:.2f} | {'' if avg is None else f'{avg:.2f}'} | "
                     f"{r['format_rate']:.2f} | {r['step_similarity']:.3f} | {r['guardrail_violations']} | "
                     f"{r['in_character_rate']:.2f} | {r['mean_response_words']:.1f} |")
    return "\n".join(lines)
