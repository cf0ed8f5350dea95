"""A serving engine that says what a test tells it to (the `ServingEngine` protocol), a few characters at a
time: the server's own handling of an answer (guardrails, the rules at serve time, limits, metrics) is tested
with answers a tiny random model would never write, such as a well-formed answer naming a forbidden action."""

import threading
import time

from serving.engine_protocol import HEARTBEAT_SECONDS, ServedAdapter, StreamStats
from srl_forge.policy import DECISION_TOKENS

GARLIC_NIGHT = {
    "game": {"time_of_day": "night"},
    "npc": {"species": "vampire", "tier": 1},
    "player": {"action": "talk", "items": ["garlic"], "faction": "hunters"},
    "location": {"kind": "village"},
}
# well formed, but garlic forbids feeding (rule vampire.garlic)
FEEDS = '<think>Warm blood, and close.</think>\nACTION: feed\nSAY: "Come closer, little one."'
CHARMS = (
    "<think>Garlic; I will not feed. A word will do.</think>\n"
    'ACTION: charm\nSAY: "Sit, mortal, and tell me of the road."'
)


class ScriptedEngine:
    name = "scripted"
    precision = "float32"
    tokenizer = None

    def __init__(
        self,
        answer: str = "",
        piece_chars: int = 4,
        seconds_per_piece: float = 0.0,
        by_model: dict | None = None,
        fails_after_pieces: int | None = None,
        waits_seconds: float = 0.0,
    ):
        self.answer = answer
        self.waits_seconds = waits_seconds  # before the first piece, as behind other answers, with heartbeats
        self.fails_after_pieces = fails_after_pieces  # then raise, as an engine whose adapter was unloaded does
        self.by_model = by_model or {}  # model name -> its own answer (blue and green saying different things)
        self.piece_chars = piece_chars
        self.seconds_per_piece = seconds_per_piece
        self.adapters: dict[str, ServedAdapter] = {}
        self.prompts: list[list[dict]] = []
        self.pieces_sent = 0
        self._lock = threading.Lock()

    def sync(self, wanted: list[ServedAdapter]) -> dict[str, list[str]]:
        names = {a.name for a in wanted}
        added = sorted(names - set(self.adapters))
        removed = sorted(set(self.adapters) - names)
        self.adapters = {a.name: a for a in wanted}
        return {"added": added, "removed": removed}

    def warm(self, name: str | None, messages: list[dict]) -> int:
        return 0

    def stream(self, name, messages, max_new_tokens=DECISION_TOKENS, temperature=0.0, stats: StreamStats | None = None):
        stats = stats or StreamStats()
        if name is not None and name not in self.adapters:
            raise KeyError(name)
        self.prompts.append(messages)
        text = self.by_model.get(name, self.answer)
        waiting_until = time.perf_counter() + self.waits_seconds
        while time.perf_counter() < waiting_until:
            time.sleep(HEARTBEAT_SECONDS)
            yield ""
        for start in range(0, len(text), self.piece_chars)[:max_new_tokens]:
            if self.fails_after_pieces is not None and start // self.piece_chars >= self.fails_after_pieces:
                raise RuntimeError(f"adapter {name!r} was unloaded mid-answer")
            if self.seconds_per_piece:
                time.sleep(self.seconds_per_piece)
            if stats.first_token is None:
                stats.first_token = time.perf_counter()
            stats.tokens += 1
            with self._lock:
                self.pieces_sent += 1
            yield text[start : start + self.piece_chars]
        stats.finished = time.perf_counter()


def streamed_chunks(running, model: str = "vampire", encounter: dict = GARLIC_NIGHT, says: str = "Hi") -> list:
    """Every chunk of one streamed chat completion from a running test server."""
    return list(
        running.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": says}], stream=True, extra_body={"encounter": encounter}
        )
    )


def streamed_content(chunks: list) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
