"""What every serving engine shares with the server, the latency gate and the benchmark: the adapters it
serves, the timings of one stream and the engine's interface (`engine.AdapterPool`,
`llama_engine.LlamaCppPool`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from srl_forge.policy import DECISION_TOKENS

# While a stream waits (for the engine's lock, a free slot, its next piece) it yields "" at least this often, so a
# caller keeps a time limit without a token to check it on, and closing the stream there stops the wait.
HEARTBEAT_SECONDS = 0.25


def wait_with_heartbeats(lock: threading.Lock) -> Iterator[str]:
    """Acquire `lock` (the caller releases it), yielding "" every `HEARTBEAT_SECONDS` until it is free."""
    while not lock.acquire(timeout=HEARTBEAT_SECONDS):
        yield ""


@dataclass(frozen=True)
class ServedAdapter:
    name: str  # the model name a game asks for
    target: str  # species or species/npc
    tier: str
    version: str
    path: str  # local adapter folder
    slot: str = "blue"  # blue: what the game is served; green: a candidate shown beside it (the playground)


@dataclass
class StreamStats:
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    finished: float | None = None
    tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens whose keys and values came from the prefix cache

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000

    @property
    def total_ms(self) -> float | None:
        return None if self.finished is None else (self.finished - self.started) * 1000

    @property
    def tokens_per_second(self) -> float | None:
        if self.finished is None or self.first_token is None or self.tokens < 2:
            return None
        return (self.tokens - 1) / max(1e-6, self.finished - self.first_token)


class ServingEngine(Protocol):
    """What the server, the latency gate and the benchmark need of an engine (`AdapterPool`, `LlamaCppPool`).
    `stream` yields text pieces, and "" every `HEARTBEAT_SECONDS` while it waits."""

    name: str  # for reports: which engine measured or served
    precision: str  # float32 | int8: what the base model's weights are served in
    tokenizer: object
    adapters: dict[str, ServedAdapter]

    def sync(self, wanted: list[ServedAdapter]) -> dict[str, list[str]]: ...
    def warm(self, name: str | None, messages: list[dict]) -> int: ...
    def stream(
        self,
        name: str | None,
        messages: list[dict],
        max_new_tokens: int = DECISION_TOKENS,
        temperature: float = 0.0,
        stats: StreamStats | None = None,
    ) -> Iterator[str]: ...
