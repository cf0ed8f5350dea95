"""The learnability reference: a small classifier on the encounter's own features, fitted on the train split.

It predicts the engine's top action from one-hot categoricals (time of day, moon, weather, the player's
action and faction, the place), multi-hot items and live events, flags (invited, consecrated) and numbers
as they are (hunger, health, allies, tier, party size). What it reaches on held-out encounters is what the
data can teach; a policy's row beside it shows how much of that the model learned. A decision tree: seeded,
deterministic, and its mistakes can be read.
"""

from __future__ import annotations

from collections.abc import Sequence

from srl_forge.encounter import Encounter


def encounter_features(encounter: Encounter) -> dict[str, float | str]:
    g, n, p, loc = encounter.game, encounter.npc, encounter.player, encounter.location
    features: dict[str, float | str] = {
        "time_of_day": g.time_of_day,
        "moon_phase": g.moon_phase,
        "weather": g.weather,
        "player_action": p.action,
        "faction": p.faction,
        "location": loc.kind,
        "invited": float(loc.invited),
        "consecrated": float(loc.consecrated),
        "hunger": n.hunger,
        "health": n.health,
        "allies": float(n.allies),
        "tier": float(n.tier),
        "party_size": float(p.party_size),
        "speaks": float(bool(p.utterance)),
    }
    features.update({f"item={item}": 1.0 for item in p.items})
    features.update({f"event={event}": 1.0 for event in g.live_events})
    return features


class FeatureClassifier:
    """`fit(encounters, top actions)` on train, then `predict(encounters)`; ties in the label take the first."""

    def __init__(self, seed: int = 0):
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.tree import DecisionTreeClassifier

        self.vectorizer = DictVectorizer(sparse=False)
        self.model = DecisionTreeClassifier(random_state=seed)

    def fit(self, encounters: Sequence[Encounter], top_actions: Sequence[Sequence[str]]) -> FeatureClassifier:
        pairs = [(e, top[0]) for e, top in zip(encounters, top_actions) if top]
        if not pairs:
            raise ValueError("no train encounter with a top action to fit the feature classifier on")
        x = self.vectorizer.fit_transform([encounter_features(e) for e, _ in pairs])
        self.model.fit(x, [label for _, label in pairs])
        return self

    def predict(self, encounters: Sequence[Encounter]) -> list[str]:
        if not encounters:
            return []
        return [
            str(a) for a in self.model.predict(self.vectorizer.transform([encounter_features(e) for e in encounters]))
        ]
