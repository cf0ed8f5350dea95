"""The serving benchmark: `make bench-serving` (or `python -m bench.serving`).

1. Engine comparison on this CPU for the default model with a rank-16 LoRA, one stream in process:
   llama.cpp (the shipped GGUF de-quantized to float32, as served, that quantized to int8 (Q8_0), and the
   shipped Q4_1 itself, with the adapter converted to a GGUF LoRA) and transformers + peft (the adapter
   beside the base), each with and without reusing the prompt prefix already read; transformers merged,
   and the bare base model.
2. Through the real server over HTTP with the `openai` client and streaming: time to first token
   (first streamed delta) and tokens/s, p50/p95 at 1, 4 and 16 concurrent streams, at the encounter
   prompt length, per tier (Tier 3 prompts carry the persona's introduction, so they are longer).

Latency does not depend on what an adapter learned, only on its shape: the benchmark serves the
registry's blue adapters when there are any, else a fresh rank-16 adapter on the tier's base model.
Results: `bench/results/serving-<date>T<time>.{json,md}`, with the tiers' budgets next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import openai
import torch
import uvicorn
from peft import PeftModel, get_peft_model

from bench.machine import machine
from serving.batched_engine import BatchedLlamaPool
from serving.engine import AdapterPool, llama_cpp_available
from serving.engine_protocol import ServedAdapter
from serving.gguf_lora import dequantized_gguf, quantized_gguf
from serving.latency import ttft_summary
from serving.llama_engine import LlamaCppPool
from serving.server import ForgeServer, build_app
from srl_assets.serve import serving_config
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.deployment import load_tiers, served_name
from srl_forge.encounter import FACTIONS, PLAYER_ITEMS, Encounter
from srl_forge.player_logs import read_player_logs
from srl_forge.policy import rlvr_prompt
from srl_forge.registry import AdapterVersion, open_registry
from srl_forge.tables import markdown_table
from training.model_loading import default_policy_gguf, load_base_model, lora_config, resolve_model

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def _encounters(species: str, n: int) -> list[dict]:
    """Encounters like the held-out ones: drawn from the encounter designer's feature space."""

    rng = random.Random(f"serving:{species}")
    out = []
    for _ in range(n):
        out.append(
            {
                "game": {
                    "time_of_day": rng.choice(["dawn", "day", "dusk", "night"]),
                    "moon_phase": rng.choice(["new", "waxing", "full", "waning"]),
                },
                "npc": {"species": species, "hunger": round(rng.random(), 2), "health": round(rng.random(), 2)},
                "player": {
                    "action": rng.choice(["approach", "talk", "attack", "threaten", "offer", "invite"]),
                    "items": rng.sample(PLAYER_ITEMS, 2),
                    "faction": rng.choice(FACTIONS),
                    "party_size": rng.randint(1, 4),
                },
                "location": {"kind": rng.choice(["village", "crypt", "forest", "road"]), "invited": rng.random() < 0.3},
            }
        )
    return out


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1),
    }


def _stream_once(client, model: str, encounter: dict, max_tokens: int) -> dict:
    start = time.perf_counter()
    first, pieces = None, 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Who goes there?"}],
        stream=True,
        max_tokens=max_tokens,
        extra_body={"encounter": encounter},
    )
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text = (delta.content or "") + (
            getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get("reasoning_content") or ""
        )
        if text:
            pieces += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    return {
        "ttft_ms": (first - start) * 1000 if first else None,
        "pieces_per_s": (pieces - 1) / (end - first) if first and pieces > 1 and end > first else None,
        "total_ms": (end - start) * 1000,
    }


def generated_tokens(server) -> float:
    """Every token the server has generated so far (its Prometheus counter)."""
    return sum(s.value for m in server.metrics.tokens.collect() for s in m.samples if s.name.endswith("_total"))


def _load_test(
    client, model: str, encounters: list[dict], concurrency: int, requests: int, max_tokens: int, server
) -> dict:
    picks = [encounters[i % len(encounters)] for i in range(requests)]
    before, started = generated_tokens(server), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        samples = list(pool.map(lambda e: _stream_once(client, model, e, max_tokens), picks))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": requests,
        "aggregate_tokens_per_s": round((generated_tokens(server) - before) / wall, 1),
        "ttft_ms": _percentiles([s["ttft_ms"] for s in samples if s["ttft_ms"] is not None]),
        "total_ms": _percentiles([s["total_ms"] for s in samples]),
        "stream_pieces_per_s": _percentiles([s["pieces_per_s"] for s in samples if s["pieces_per_s"]]),
    }


def prefill_tokens_per_s(
    gguf_path: Path, tokenizer_path: str, text: str, precision: str, tokens: int = 512, repeats: int = 3
) -> dict:
    """The compute bound: how fast this machine reads prompt tokens at the served precision, all threads, one
    `llama_decode` of `tokens` tokens (the best of `repeats`). Every prompt token a request does not share with
    the cached system prompt costs 1/this seconds before its first token, however requests are scheduled."""

    cache = Path(tempfile.mkdtemp(prefix="srl-bench-prefill-"))
    pool = BatchedLlamaPool(gguf_path, tokenizer_path, cache, slots=1, precision=precision)
    try:
        messages = [{"role": "user", "content": text}]
        seconds = min(pool.prefill_seconds(messages, tokens) for _ in range(repeats))
    finally:
        pool.close()
    return {"tokens": tokens, "tokens_per_s": round(tokens / seconds, 1), "precision": pool.precision}


def engine_comparison(model_path: str, adapter_dir: str, prompts: list[list[dict]], max_new_tokens: int) -> list[dict]:
    """One stream at a time, in process, the same rank-16 adapter: llama.cpp (the server's engine for the
    default policy when llama-cpp-python is installed) and transformers + peft, each with and without
    reusing the keys and values of the prompt they already read; transformers also merged and bare."""

    adapter = [ServedAdapter(name="a", target="a", tier="tier1", version="a" * 64, path=adapter_dir)]
    rows = []
    if llama_cpp_available():
        gguf_cache = Path(tempfile.mkdtemp(prefix="srl-bench-gguf-"))
        float32 = dequantized_gguf(default_policy_gguf(), gguf_cache / "base-f32.gguf")
        int8 = quantized_gguf(float32, gguf_cache / "base-q8_0.gguf")
        for weights, path, label, reuse in (
            ("float32 GGUF", float32, "shared prompt prefix reused (the server)", True),
            ("float32 GGUF", float32, "no prefix reuse", False),
            ("int8 (Q8_0 from float32) GGUF", int8, "shared prompt prefix reused (the server at int8)", True),
            ("shipped Q4_1 GGUF", default_policy_gguf(), "shared prompt prefix reused", True),
            ("shipped Q4_1 GGUF", default_policy_gguf(), "no prefix reuse", False),
        ):
            pool = LlamaCppPool(path, model_path, gguf_cache / weights.split()[0], reuse_prefix=reuse)
            pool.sync(adapter)
            rows.append(
                {
                    "engine": f"llama.cpp (llama-cpp-python), {weights} + GGUF LoRA, {label}",
                    **ttft_summary(pool, "a", prompts, max_new_tokens=max_new_tokens),
                }
            )
            pool.sync([])
    else:
        rows.append(
            {
                "engine": "llama.cpp: llama-cpp-python is not installed",
                "streams": 0,
                "ttft_p50_ms": None,
                "ttft_p95_ms": None,
                "tokens_per_s_p50": None,
            }
        )
    for label, cache_size in (("system prompt cached", 64), ("no prefix cache", 0)):
        pool = AdapterPool(model_path, prefix_cache_size=cache_size)
        pool.sync(adapter)
        rows.append(
            {
                "engine": f"transformers + peft, adapter unmerged, {label}",
                **ttft_summary(pool, "a", prompts, max_new_tokens=max_new_tokens),
            }
        )
    merged = AdapterPool(model_path, prefix_cache_size=0)
    merged.base = PeftModel.from_pretrained(merged.base, adapter_dir).merge_and_unload()
    merged.model = merged.base
    rows.append(
        {
            "engine": "transformers, adapter merged (one model per adapter), no prefix cache",
            **ttft_summary(merged, None, prompts, max_new_tokens=max_new_tokens),
        }
    )
    bare = AdapterPool(model_path, prefix_cache_size=0)
    rows.append(
        {
            "engine": "transformers, base model only (no adapter), no prefix cache",
            **ttft_summary(bare, None, prompts, max_new_tokens=max_new_tokens),
        }
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", default="vampire")
    parser.add_argument("--npc", default="count_orlok")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--engine", help="the server's engine (default: SRL_FORGE_SERVING_ENGINE, serving/engine.py)")
    parser.add_argument("--skip-engine-comparison", action="store_true", help="only the load test through the server")
    args = parser.parse_args(argv)

    config = serving_config(**({"engine": args.engine} if args.engine else {}))
    tiers = load_tiers(Path(config.tiers_file))
    model_path = resolve_model(next(iter(tiers.values())).base_model, Path(config.model_cache))
    work = Path(tempfile.mkdtemp(prefix="srl-serving-bench-"))
    # a fresh rank-16 adapter in its own registry: the same shape as a trained one

    adapter_dir = work / "adapter"
    get_peft_model(load_base_model(model_path), lora_config()).save_pretrained(str(adapter_dir))
    store = LocalArtifactStore(work / "artifacts")
    uri = store.put_directory("adapters", args.species, adapter_dir, "bench")
    registry = open_registry(work / "registry.duckdb")
    base = next(iter(tiers.values())).base_model
    for target, serves, version in (
        (args.species, "species", "s" * 64),
        (f"{args.species}/{args.npc}", "persona", "p" * 64),
    ):
        adapter = registry.register(
            AdapterVersion(
                version=version,
                target=target,
                kind="bench",
                base_model=base,
                adapter_uri=uri,
            )
        )
        for tier in [t for t, spec in tiers.items() if spec.serves == serves]:
            # blue without the gates: a latency benchmark's throwaway registry, and latency does not depend on
            # what an adapter learned, only on its shape
            registry.land_candidate(target, tier, adapter.version, "bench")
            registry.promote(target, tier, adapter.version, [], "bench", reason="serving benchmark")
    server = ForgeServer(
        config.model_copy(
            update={
                "registry": str(work / "registry.duckdb"),
                "artifacts_root": str(work / "artifacts"),
                "player_logs_root": str(work / "player_logs"),
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(build_app(server), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=uv.run, daemon=True).start()
    while not uv.started:
        time.sleep(0.1)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0, timeout=600)
    encounters = _encounters(args.species, 16)

    tier_rows = []
    for tier, spec in tiers.items():
        name = served_name(f"{args.species}/{args.npc}" if spec.serves == "persona" else args.species, tier)
        monster = server.monsters[name]
        prompt = server.prompt_for(monster, Encounter.model_validate(encounters[0]))
        prompt_tokens = len(
            server.pool.tokenizer(
                server.pool.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                add_special_tokens=False,
            )["input_ids"]
        )
        _stream_once(client, name, encounters[0], args.max_tokens)  # warm-up
        for concurrency in args.concurrency:
            requests = max(4, concurrency)
            print(f"{tier} {name}: {concurrency} concurrent streams, {requests} requests", file=sys.stderr)
            result = _load_test(client, name, encounters, concurrency, requests, args.max_tokens, server)
            tier_rows.append(
                {
                    "tier": tier,
                    "model": name,
                    "prompt_tokens": prompt_tokens,
                    "budget_ms": spec.ttft_budget_ms,
                    **result,
                }
            )
    uv.should_exit = True
    records, _ = read_player_logs(work / "player_logs", args.species)
    asked = sum(r["requests"] for r in tier_rows) + len(tiers)  # and one warm-up per tier
    logged = {
        "asked": asked,
        "logged": len(records),
        "replaced_by_rules": sum(1 for r in records if r.served and r.served.rules and r.served.rules.replaced),
        "unreadable": sum(1 for r in records if r.served and not r.served.format_ok),
    }
    compute_bound = None
    if hasattr(server.pool, "gguf_path"):
        monster = server.monsters[served_name(args.species, next(iter(tiers)))]
        text = server.prompt_for(monster, Encounter.model_validate(encounters[0]))[0]["content"]
        compute_bound = prefill_tokens_per_s(server.pool.gguf_path, model_path, text, server.precision)

    prompts = [
        rlvr_prompt(Encounter.model_validate(e), server.monsters[args.species].engine.vocabulary)
        for e in encounters[:8]
    ]
    engines = (
        [] if args.skip_engine_comparison else engine_comparison(model_path, str(adapter_dir), prompts, args.max_tokens)
    )
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "max_tokens": args.max_tokens,
        "base_model": base,
        "server_engine": f"{server.pool.name} ({server.precision})",
        "tiers": tier_rows,
        "answers": logged,
        "compute_bound": compute_bound,
        "engines": engines,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"serving-{out['date'][:10]}T{out['date'][11:13]}{out['date'][14:16]}"  # one file per run
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(to_markdown(out))
    print(to_markdown(out))
    return 0


def _cell(p: dict) -> str:
    return "" if p["p50"] is None else f"{p['p50']:.0f} / {p['p95']:.0f}"


def _answers_and_bound(out: dict) -> list[str]:
    lines = []
    if a := out.get("answers"):
        lines += [
            f"Answers logged for training: {a['logged']} of {a['asked']} asked; replaced by the rules engine "
            f"(the tier's `rules_enforcement`): {a['replaced_by_rules']}; unreadable: {a['unreadable']}.",
            "",
        ]
    if b := out.get("compute_bound"):
        lines += [
            f"Compute bound: this machine reads {b['tokens_per_s']:.0f} prompt tokens/s at {b['precision']} (one "
            f"batch of {b['tokens']} tokens, all threads). A request's first token waits at least its unshared "
            "prompt tokens divided by that, plus the prompts of the requests read in the same batches.",
            "",
        ]
    return lines


def to_markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        f"# Serving benchmark ({out['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({out['torch_threads']} threads). "
        f"Base model `{out['base_model']}`, rank-16 LoRA, greedy, up to {out['max_tokens']} new tokens. "
        f"Server engine: `{out.get('server_engine', 'transformers + peft')}`. Encounters are drawn at random, so "
        "consecutive prompts share only the system prompt (a live game shares the world line too).",
        "",
        "## Through the server (HTTP, `openai` client, streaming)",
        "",
        "TTFT = time from sending the request to the first streamed delta (thinking or content).",
        "",
        markdown_table(
            [
                "tier",
                "model",
                "prompt tokens",
                "streams",
                "requests",
                "TTFT p50 / p95 ms",
                "budget ms",
                "p50 within budget",
                "whole answer p50 / p95 ms",
                "streamed pieces/s p50 / p95",
                "aggregate tokens/s",
            ],
            [
                [
                    r["tier"],
                    f"`{r['model']}`",
                    r["prompt_tokens"],
                    r["concurrency"],
                    r["requests"],
                    _cell(r["ttft_ms"]),
                    f"{r['budget_ms']:.0f}",
                    "" if r["ttft_ms"]["p50"] is None else ("yes" if r["ttft_ms"]["p50"] <= r["budget_ms"] else "NO"),
                    _cell(r["total_ms"]),
                    _cell(r["stream_pieces_per_s"]),
                    r.get("aggregate_tokens_per_s", ""),
                ]
                for r in out["tiers"]
            ],
        ),
        "",
        *_answers_and_bound(out),
        "## Engines, in process, one stream",
        "",
        markdown_table(
            ["engine", "TTFT p50 ms", "TTFT p95 ms", "tokens/s p50"],
            [
                [
                    e["engine"],
                    "" if e["ttft_p50_ms"] is None else f"{e['ttft_p50_ms']:.0f}",
                    "" if e["ttft_p50_ms"] is None else f"{e['ttft_p95_ms']:.0f}",
                    "" if e["tokens_per_s_p50"] is None else f"{e['tokens_per_s_p50']:.1f}",
                ]
                for e in out["engines"]
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
