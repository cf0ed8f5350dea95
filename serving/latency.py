"""Time to first token and tokens/s, measured through the same streaming path the server uses."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from serving.engine_protocol import ServingEngine, StreamStats


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure_stream(pool: ServingEngine, name: str | None, prompt: list[dict], max_new_tokens: int) -> StreamStats:
    stats = StreamStats()
    for _ in pool.stream(name, prompt, max_new_tokens=max_new_tokens, stats=stats):
        pass
    return stats


def ttft_summary(
    pool: ServingEngine, name: str | None, prompts: Sequence[list[dict]], max_new_tokens: int = 8, warmup: int = 1
) -> dict:
    """One stream at a time over `prompts` (after `warmup` unmeasured ones): p50/p95 time to first token."""
    for prompt in prompts[:warmup]:
        measure_stream(pool, name, prompt, max_new_tokens)
    samples = [measure_stream(pool, name, p, max_new_tokens) for p in prompts]
    ttfts = [s.ttft_ms for s in samples if s.ttft_ms is not None]
    rates = [s.tokens_per_second for s in samples if s.tokens_per_second]
    return {
        "streams": len(samples),
        "ttft_p50_ms": percentile(ttfts, 0.5),
        "ttft_p95_ms": percentile(ttfts, 0.95),
        "tokens_per_s_p50": statistics.median(rates) if rates else None,
    }
