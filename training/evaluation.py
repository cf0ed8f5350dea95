"""Held-out evaluation: the learned policies next to trivial references and the ceiling.

Policies, each used the way it was trained:
- references: `best_constant` (always the action that is most often the engine's top choice on the
  *train* split, with a stock line), `random_acceptable` (a uniformly random acceptable action, a
  random stock line; seeded), `feature_classifier` (a decision tree on the encounter's features, fitted
  on the train split: what the data can teach) and `rules_engine` (the ceiling: the engine's top action
  and the expert's line);
- `direct` (base, SFT-only, RLVR-only, SRL→RLVR): the RLVR prompt; the answer is `<think>…</think>`,
  `ACTION: <id>`, `SAY: "…"`;
- `stepwise` (SRL): the SRL prompt, rolled out step by step — ASSESS is given (it is perception, not
  a decision), then the policy writes each next step (choosing its title) with the previous steps in
  context until it has spoken; its DECIDE and SPEAK steps are the answer.

Metrics per policy on the same held-out encounters (greedy), each with a 95% bootstrap interval
over encounters: decision accuracy (the engine's top action), acceptable rate, graded decision
reward, format rate, line grounding, in-character rate, distinct-2 and duplicate-line share across
encounters, guardrail violations. Step similarity on held-out expert steps for the trained ones.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from srl_forge.artifacts import StoredArtifact
from srl_forge.encounter import Encounter
from srl_forge.grounding import grounding_score, is_stock, words
from srl_forge.guardrails import check as guardrail_violations
from srl_forge.policy import (
    DECISION_TOKENS,
    STEP_TOKENS,
    action_in,
    assess_text,
    decision_format_settled_broken,
    describe_encounter,
    first_step,
    parse_decision,
    parse_step,
    render_answer,
    split_thinking,
    spoken_in,
    srl_prompt,
    step_format_settled_broken,
)
from srl_forge.stats import Interval, mean_interval, percentile_bounds
from srl_forge.tables import markdown_table
from training.outcome_dataset import OutcomeRow
from training.plots import figure, png_bytes
from training.policy_eval import generate, srl_validation
from training.rewards import decision_score

VARIANTS = ("base", "srl", "srl_rlvr")  # the evaluation asset's; the deployment gates read `srl_rlvr`
ABLATIONS = ("sft_only", "rlvr_only")  # the ablation_evaluation asset's, on the same held-out encounters
REFERENCES = ("best_constant", "random_acceptable", "feature_classifier", "rules_engine")
MAX_ROLLOUT_STEPS = 9  # ASSESS is given; trajectories have at most 2 recalls, 3 rules, DECIDE and SPEAK
CANDIDATE = "srl_rlvr"  # the variant a deployment would ship; the others are diagnostics


class PolicyMetrics(BaseModel):
    """A policy's aggregates over the scored encounters, each with its 95% interval."""

    model_config = ConfigDict(frozen=True)
    decision_accuracy: Interval
    acceptable_rate: Interval
    graded_reward: Interval
    format_rate: Interval
    line_grounding: Interval
    in_character_rate: Interval
    stock_line_share: Interval
    distinct_2: Interval
    duplicate_line_share: Interval
    guardrail_violations: Interval  # a count: the interval spans resampled counts
    judge_character: Interval | None = None  # the optional LLM judge's 1-5 scores
    judge_relevance: Interval | None = None


class FlaggedOutput(BaseModel):
    category: str
    evidence: str
    output: str


class ExampleAnswer(BaseModel):
    encounter_id: str
    top: list[str]
    answer: str


class PolicyResult(BaseModel):
    """One policy scored on the held-out encounters."""

    mode: str  # "reference", "direct" or "stepwise"
    encounters: int
    metrics: PolicyMetrics
    lines: list[str | None]
    flagged_outputs: list[FlaggedOutput] = []
    mean_response_words: float = 0.0
    examples: list[ExampleAnswer] = []  # enough to read before believing a number
    step_similarity: float | None = None  # SRL only: similarity of its steps to held-out expert steps
    adapter_version: str | None = None
    training_seconds: float | None = None


class EvaluationReport(StoredArtifact):
    """The held-out comparison of a species' adapters, the references and the ceiling."""

    model_config = ConfigDict(frozen=True)
    species: str
    held_out_encounters: int
    held_out_total: int
    step_rows: int
    constant_action: str
    budget: str | None = None
    results: dict[str, PolicyResult]
    table: str
    scope: str
    encounter_ids: tuple[str, ...] = ()  # the held-out encounters scored, in order

    def violation_rates(self) -> dict[str, float]:
        """Guardrail violations per evaluated output, per variant."""
        return {name: r.metrics.guardrail_violations.value / max(1, r.encounters) for name, r in self.results.items()}


@dataclass(frozen=True)
class EvalCase:
    row: dict  # `training.outcome_dataset.outcome_row` of a held-out encounter
    encounter: Encounter
    expert_answer: str | None = None  # the expert's final answer in the RLVR format


def reference_answers(
    name: str, cases: Sequence[EvalCase], constant: str, seed: int = 0, predicted: Sequence[str] | None = None
) -> list[str]:
    """The trivial policies, the feature classifier (`predicted`: its action per case) and the ceiling, as
    answers in the policy's format."""
    rng = random.Random(f"{name}:{seed}")
    out = []
    for i, case in enumerate(cases):
        stock = list(case.row["stock_lines"]) or ["..."]
        if name == "best_constant":
            action, line = constant, stock[0]
        elif name == "random_acceptable":
            acceptable = list(case.row["acceptable_actions"]) or [constant]
            action, line = rng.choice(acceptable), rng.choice(stock)
        elif name == "feature_classifier":
            action, line = predicted[i], stock[0]
        elif name == "rules_engine":
            if case.expert_answer:
                out.append(case.expert_answer)
                continue
            action, line = (list(case.row["top_actions"]) or [constant])[0], stock[0]
        else:
            raise ValueError(name)
        out.append(render_answer(name, action, line))
    return out


def answer_scores(case: EvalCase, answer: str) -> dict:
    """Every per-encounter measure of one answer."""
    row = OutcomeRow.model_validate(case.row)
    decision = parse_decision(answer)
    action, line = decision if decision else (None, None)
    return {
        "format": decision is not None,
        "decision_accuracy": float(action in row.top_actions) if action else 0.0,
        "acceptable_rate": float(action in row.acceptable_actions) if action else 0.0,
        "graded_reward": decision_score(answer, row.score_of()),
        "line_grounding": grounding_score(line, row.grounding_terms, row.player_utterance) if line is not None else 0.0,
        "in_character": float(line is not None and not row.dialogue_constraints.check(line)),
        "stock": line is not None and is_stock(line, row.stock_lines),
        "guardrail": bool(guardrail_violations(answer)),
        "line": line,
    }


def distinct_2(lines: Sequence[str | None]) -> float:
    bigrams = [tuple(w[i : i + 2]) for line in lines if line for w in [words(line)] for i in range(len(w) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def duplicate_line_share(lines: Sequence[str | None]) -> float:
    """Share of encounters whose line is spoken, word for word, in another encounter too (a broken answer
    counts as a duplicate: it says nothing of its own)."""
    keys = [" ".join(words(line)) if line else None for line in lines]
    counts = Counter(k for k in keys if k is not None)
    return sum(k is None or counts[k] > 1 for k in keys) / len(keys) if keys else 0.0


def _aggregate(per_case: Sequence[dict], lines: Sequence[str | None] | None = None) -> dict[str, float]:
    """Means over encounters; distinct-2 over `lines` (default: the cases' own lines)."""
    n = max(1, len(per_case))
    lines = [c["line"] for c in per_case] if lines is None else lines
    return {
        "decision_accuracy": sum(c["decision_accuracy"] for c in per_case) / n,
        "acceptable_rate": sum(c["acceptable_rate"] for c in per_case) / n,
        "graded_reward": sum(c["graded_reward"] for c in per_case) / n,
        "format_rate": sum(c["format"] for c in per_case) / n,
        "line_grounding": sum(c["line_grounding"] for c in per_case) / n,
        "in_character_rate": sum(c["in_character"] for c in per_case) / n,
        "stock_line_share": sum(c["stock"] for c in per_case) / n,
        "distinct_2": distinct_2(lines),
        "duplicate_line_share": sum(c["duplicate"] for c in per_case) / n,
        "guardrail_violations": float(sum(c["guardrail"] for c in per_case)),
    }


def jackknife_interval(lines: Sequence[str | None], statistic=None, level_z: float = 1.96) -> tuple[float, float]:
    """A leave-one-out (jackknife) normal interval for a statistic of the whole set of lines.

    Distinct-2 depends on the set's size and on which lines repeat, so resampling with replacement
    invents repeats (reads low) and resampling distinct items shrinks the set (reads high); the
    jackknife keeps n-1 real lines each time and is centred on the measured value."""
    statistic = statistic or distinct_2
    n = len(lines)
    value = statistic(lines)
    if n < 2:
        return value, value
    leave_one_out = [statistic(lines[:i] + lines[i + 1 :]) for i in range(n)]
    mean = sum(leave_one_out) / n
    se = ((n - 1) / n * sum((v - mean) ** 2 for v in leave_one_out)) ** 0.5
    return max(0.0, value - level_z * se), min(1.0, value + level_z * se)


def bootstrap(per_case: Sequence[dict], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> PolicyMetrics:
    """Every aggregate with a percentile bootstrap interval over encounters.

    Line-set metrics need care: resampling with replacement would invent duplicate lines. Whether a
    line is duplicated is decided once, on the whole set, and that per-encounter flag is resampled;
    distinct-2 gets a jackknife interval instead (see `jackknife_interval`)."""
    keys = [" ".join(words(c["line"])) if c["line"] else None for c in per_case]
    counts = Counter(k for k in keys if k is not None)
    per_case = [{**c, "duplicate": k is None or counts[k] > 1} for c, k in zip(per_case, keys)]
    point = _aggregate(per_case)
    if not per_case:
        return PolicyMetrics(**{k: Interval.exact(v) for k, v in point.items()})
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        picks = [rng.randrange(len(per_case)) for _ in per_case]
        draws.append(_aggregate([per_case[i] for i in picks]))
    out = {}
    for key, value in point.items():
        low, high = percentile_bounds(sorted(d[key] for d in draws), level)
        out[key] = Interval(value=value, low=low, high=high)
    low, high = jackknife_interval([c["line"] for c in per_case])
    out["distinct_2"] = Interval(value=point["distinct_2"], low=low, high=high)
    return PolicyMetrics(**out)


def score_policy(cases: Sequence[EvalCase], answers: Sequence[str], mode: str, seed: int = 0) -> PolicyResult:
    per_case = [answer_scores(c, a) for c, a in zip(cases, answers)]
    flagged = [
        FlaggedOutput(category=v[0].category, evidence=v[0].evidence, output=a[:400])
        for a in answers
        if (v := guardrail_violations(a))
    ]
    return PolicyResult(
        mode=mode,
        encounters=len(cases),
        metrics=bootstrap(per_case, seed=seed),
        lines=[c["line"] for c in per_case],
        flagged_outputs=flagged,
        mean_response_words=sum(len(a.split()) for a in answers) / max(1, len(answers)),
        examples=[
            ExampleAnswer(encounter_id=c.row["encounter_id"], top=list(c.row["top_actions"]), answer=a)
            for c, a in list(zip(cases, answers))[:20]
        ],
    )


def judge_policy(
    judge, species: str, cases: Sequence[EvalCase], lines: Sequence[str | None], seed: int = 0
) -> dict[str, Interval]:
    """The optional LLM judge's mean character and relevance (1-5) of a policy's lines, with intervals;
    a broken answer has no line and scores 1 on both."""

    spoken = [(i, line) for i, line in enumerate(lines) if line]
    verdicts = judge.judge_many(species, [(describe_encounter(cases[i].encounter), line) for i, line in spoken])
    scores = {i: v for (i, _), v in zip(spoken, verdicts)}
    per_case = [(scores[i].character, scores[i].relevance) if i in scores else (1, 1) for i in range(len(lines))]
    return {
        key: mean_interval([p[k] for p in per_case], seed=seed)
        for k, key in enumerate(("judge_character", "judge_relevance"))
    }


def _answer_from_steps(steps: list[str]) -> str | None:
    """The stepwise rollout as an RLVR-format answer: one DECIDE step, ending with one SPEAK step; else None."""
    if sum("**DECIDE**" in s for s in steps) != 1 or "**SPEAK**" not in steps[-1]:
        return None
    decide = next(s for s in steps if "**DECIDE**" in s)
    action, line = action_in(decide), spoken_in(steps[-1])
    if not action or not line:
        return None
    thought = " ".join(s for s in steps[:-1] if s is not decide)
    return render_answer(thought, action, line)


def stepwise_answers(model, tokenizer, cases: Sequence[EvalCase], max_new_tokens: int) -> list[str]:
    """Roll the SRL policy out step by step (greedy, batched), the policy choosing each next step's title, until
    it speaks; raw text where it broke the format."""
    rollouts = [[f"1. **ASSESS** {assess_text(c.encounter)}"] for c in cases]
    raw = [""] * len(cases)
    alive = [True] * len(cases)
    for number in range(2, MAX_ROLLOUT_STEPS + 2):
        index = [i for i, ok in enumerate(alive) if ok]
        if not index:
            break
        prompts = [srl_prompt(cases[i].encounter, rollouts[i], number, None) for i in index]
        outs = generate(model, tokenizer, prompts, max_new_tokens, stop_when=step_format_settled_broken)
        for i, out in zip(index, outs):
            raw[i] += out[0] + "\n"
            parts = split_thinking(first_step(out[0]))
            step = parse_step(parts[1]) if parts else None
            if step is None:
                alive[i] = False
                continue
            rollouts[i].append(f"{number}. **{step[1]}** {step[2]}")
            if step[1] == "SPEAK":
                alive[i] = False
    return [_answer_from_steps(r) or raw[i] for i, r in enumerate(rollouts)]


def direct_answers(model, tokenizer, cases: Sequence[EvalCase], max_new_tokens: int) -> list[str]:
    return [
        g[0]
        for g in generate(
            model, tokenizer, [c.row["prompt"] for c in cases], max_new_tokens, stop_when=decision_format_settled_broken
        )
    ]


def evaluate_variant(
    model,
    tokenizer,
    mode: str,
    cases: Sequence[EvalCase],
    step_rows: Sequence[dict],
    max_new_tokens: int | None = None,
    log: Callable[[str], None] = print,
    seed: int = 0,
) -> dict:
    """`max_new_tokens`: each answer's budget (None: a step's `STEP_TOKENS` rolled out step by step, a
    decision's `DECISION_TOKENS` answered directly)."""
    stepwise = mode == "stepwise"
    max_new_tokens = max_new_tokens or (STEP_TOKENS if stepwise else DECISION_TOKENS)
    answers = (stepwise_answers if stepwise else direct_answers)(model, tokenizer, cases, max_new_tokens)
    log(f"{mode}: greedy answers for {len(cases)} encounters")
    result = score_policy(cases, answers, mode, seed=seed)
    if step_rows and stepwise:  # step similarity only means something for a policy that writes SRL steps
        result.step_similarity = srl_validation(model, tokenizer, step_rows, max_new_tokens)["step_similarity"]
    return result


def evaluate_reference(
    name: str, cases: Sequence[EvalCase], constant: str, seed: int = 0, predicted: Sequence[str] | None = None
) -> PolicyResult:
    return score_policy(cases, reference_answers(name, cases, constant, seed, predicted), "reference", seed=seed)


TABLE_COLUMNS = (
    ("decision_accuracy", "decision acc."),
    ("acceptable_rate", "acceptable"),
    ("graded_reward", "graded reward"),
    ("format_rate", "format"),
    ("line_grounding", "grounding"),
    ("in_character_rate", "in character"),
    ("distinct_2", "distinct-2"),
    ("duplicate_line_share", "dup. lines"),
)


JUDGE_COLUMNS = (("judge_character", "judge: character"), ("judge_relevance", "judge: relevance"))


def comparison_table(results: dict[str, PolicyResult]) -> str:
    judged = all(r.metrics.judge_character is not None for r in results.values())
    columns = TABLE_COLUMNS + (JUDGE_COLUMNS if judged else ())
    headers = ["policy", "mode", "n"] + [label for _, label in columns] + ["guardrail", "step sim."]
    rows = [
        [name, r.mode, str(r.encounters)]
        + [getattr(r.metrics, key).cell() for key, _ in columns]
        + [
            f"{int(r.metrics.guardrail_violations.value)}",
            "" if r.step_similarity is None else f"{r.step_similarity:.3f}",
        ]
        for name, r in results.items()
    ]
    return markdown_table(headers, rows)


def comparison_png(results: dict[str, PolicyResult], title: str) -> bytes:
    """Decision accuracy and graded reward per policy, with their 95% intervals."""

    names = list(results)
    fig, axes = figure(9, 3.4, columns=2)
    for ax, key, label in (
        (axes[0], "decision_accuracy", "decision accuracy"),
        (axes[1], "graded_reward", "graded reward"),
    ):
        values = [getattr(results[n].metrics, key) for n in names]
        ax.bar(
            range(len(names)),
            [v.value for v in values],
            yerr=[[v.value - v.low for v in values], [v.high - v.value for v in values]],
            color=["#999999" if results[n].mode == "reference" else "#4c72b0" for n in names],
            capsize=3,
        )
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return png_bytes(fig)
