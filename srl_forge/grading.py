"""The rules engine's decision as ground truth: labels for the designer, graded scores for the reward.

Graded decision score of an action (the RLVR reward's decision part and the evaluation's metric):

| the action is...                                                  | score |
|---|---|
| the engine's top choice (`recommended`, or one of `tied`)          | 1.0 |
| acceptable and favoured by a weaker rule, by its rank among those  | 0.5 down to 0.3 |
| acceptable, but no rule favours it                                 | 0.2 |
| unacceptable (forbidden, ignores a requirement, unknown; conflict) | 0.0 |
| (broken format or a guardrail violation: -1, in `training.rewards`) | -1.0 |

Why these values: the top choice must be the unique optimum with a clear margin (0.5), or a policy
learns that "acceptable" is good enough — which is what a lazy monster does. Something a rule
favours beats something the rules merely allow, so reading a weaker rule is still rewarded. Any
acceptable action beats an unacceptable one (0.2 > 0), and a broken answer is worse than any
answer (-1), so format and safety are learned first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from srl_forge.rulebook import Rulebook
from srl_forge.rules_engine import Decision

TOP_SCORE = 1.0
FAVOURED_HIGH, FAVOURED_LOW = 0.5, 0.3
ALLOWED_SCORE = 0.2
UNACCEPTABLE_SCORE = 0.0


class DecisionLabel(BaseModel):
    """What the designer balances on: the top action(s) and how the decision came about."""

    model_config = ConfigDict(frozen=True)
    top_actions: tuple[str, ...]  # the recommended action, or the tied ones
    acceptable: tuple[str, ...]
    contested: bool  # two or more conditional rules with different effects and priorities, or an event decides
    open: bool  # every action acceptable: the rules leave the choice free
    conflict: bool  # the rules contradict each other: nothing is acceptable
    deciding_rules: tuple[str, ...] = ()


def top_actions(decision: Decision) -> tuple[str, ...]:
    if decision.recommended:
        return (decision.recommended,)
    return tuple(decision.tied)


def action_scores(decision: Decision, vocabulary: Sequence[str]) -> dict[str, float]:
    """The graded decision score of every action of the vocabulary (see the table above)."""
    top = set(top_actions(decision))
    favoured = [a for a in decision.acceptable if a not in top and a in decision.preference]
    scores = {}
    for action in vocabulary:
        if action in top:
            scores[action] = TOP_SCORE
        elif action in favoured:
            position = favoured.index(action)
            step = (FAVOURED_HIGH - FAVOURED_LOW) / max(1, len(favoured) - 1)
            scores[action] = round(FAVOURED_HIGH - position * step, 4)
        elif action in decision.acceptable:
            scores[action] = ALLOWED_SCORE
        else:
            scores[action] = UNACCEPTABLE_SCORE
    return scores


def label_decision(decision: Decision, rulebook: Rulebook) -> DecisionLabel:
    rules = {r.id: r for r in rulebook.rules}
    decisive = [e for e in decision.trace if e.effect.split(" ")[0] in ("require", "forbid", "prefer")]
    # The backdrop (unconditional, ungated rules such as "watch when nothing presses") never contests.
    conditional = [e for e in decisive if rules[e.rule_id].when or rules[e.rule_id].events.only_during]
    contested = (len({e.effect for e in conditional}) >= 2 and len({e.priority for e in conditional}) >= 2) or any(
        rules[e.rule_id].events.only_during and e.status == "applied" for e in decisive
    )
    applied = sorted((e for e in conditional if e.status == "applied"), key=lambda e: -e.priority)
    return DecisionLabel(
        top_actions=top_actions(decision),
        acceptable=decision.acceptable,
        contested=contested,
        open=set(decision.acceptable) == set(rulebook.actions),
        conflict=bool(decision.conflicts),
        deciding_rules=tuple(dict.fromkeys(e.rule_id for e in applied)),
    )


class PolicyScore(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    accuracy: float  # the engine's top action
    graded: float  # mean graded decision score
    acceptable: float


def reference_scores(
    labels: Sequence[DecisionLabel],
    scores: Sequence[dict[str, float]],
    vocabulary: Sequence[str],
    constant: str | None = None,
    seed: int = 0,
) -> dict[str, PolicyScore]:
    """The trivial reference policies on a set of decisions: the best constant action (or `constant`,
    chosen elsewhere, e.g. on the train split) and a uniformly random acceptable action (expected)."""
    n = max(1, len(labels))

    def constant_score(action: str) -> PolicyScore:
        return PolicyScore(
            name=f"constant:{action}",
            accuracy=sum(action in lab.top_actions for lab in labels) / n,
            graded=sum(s[action] for s in scores) / n,
            acceptable=sum(action in lab.acceptable for lab in labels) / n,
        )

    best = constant or max(vocabulary, key=lambda a: (constant_score(a).accuracy, constant_score(a).graded))
    random_acceptable = PolicyScore(
        name="random_acceptable",
        accuracy=sum(
            len(set(lab.top_actions) & set(lab.acceptable)) / len(lab.acceptable) for lab in labels if lab.acceptable
        )
        / n,
        graded=sum(
            sum(s[a] for a in lab.acceptable) / len(lab.acceptable) for lab, s in zip(labels, scores) if lab.acceptable
        )
        / n,
        acceptable=sum(bool(lab.acceptable) for lab in labels) / n,
    )
    return {"best_constant": constant_score(best), "random_acceptable": random_acceptable}


def best_constant_action(labels: Sequence[DecisionLabel], vocabulary: Sequence[str]) -> str:
    counts = Counter(a for lab in labels for a in lab.top_actions)
    return max(vocabulary, key=lambda a: (counts[a], -list(vocabulary).index(a)))


def task_profile(labels: Iterable[DecisionLabel]) -> dict:
    """Shares a person wants to see for a split: contested, open, and the top-action distribution."""
    labels = list(labels)
    n = max(1, len(labels))
    tops = Counter(a for lab in labels for a in lab.top_actions)
    return {
        "encounters": len(labels),
        "contested_share": sum(lab.contested for lab in labels) / n,
        "open_share": sum(lab.open for lab in labels) / n,
        "top_action_share": {a: c / n for a, c in tops.most_common()},
        "max_top_share": max(tops.values(), default=0) / n,
    }
