"""8-bit against float32 serving, on a trained adapter and its species' held-out encounters:
`python -m bench.serving_precision --home <pipeline home> --species zombie`.

The home is one the pipeline ran in (`SRL_FORGE_HOME`, or a `bench.learning` temporary home): the benchmark
takes its newest SRL→RLVR adapter from the registry and the validation split of its RLVR dataset (the held-out
encounters evaluation scores), and serves both through the llama.cpp engine the server uses, at `float32`
(the weights the policy was trained on) and at `int8` (Q8_0 quantized from them), greedy, one stream. Per
precision: decision accuracy, format, in character, grounding (`training.evaluation.score_policy`, 95%
bootstrap intervals), time to first token and tokens/s; and how often int8 decides what float32 decided.
Results: `bench/results/serving-precision-<species>.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from bench.machine import commit, machine
from serving.engine import open_engine
from serving.engine_protocol import ServedAdapter, StreamStats
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.encounter import Encounter
from srl_forge.policy import parse_decision
from srl_forge.registry import open_registry
from srl_forge.tables import markdown_table
from training.evaluation import EvalCase, score_policy
from training.model_loading import DEFAULT_POLICY

RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = ("float32", "int8")


def held_out_rows(home: Path, species: str) -> list[dict]:
    pointer = json.loads((home / "artifacts" / "_pointers" / "rlvr_dataset" / f"{species}.json").read_text())
    rows = pq.read_table(pointer["uri"].removeprefix("file://")).to_pylist()
    return [r for r in rows if r["split"] == "validation"]


def newest_adapter(home: Path, species: str, kind: str):
    versions = [v for v in open_registry(home / "registry.duckdb").versions(species) if v.kind == kind]
    if not versions:
        raise SystemExit(f"{home}: the registry has no {kind} adapter for {species}: run the pipeline there first")
    adapter = versions[-1]
    return adapter, LocalArtifactStore(home / "artifacts").local_path(adapter.adapter_uri)


def serve_all(precision: str, home: Path, adapter, adapter_dir: Path, rows: list[dict], max_tokens: int) -> dict:
    pool = open_engine("llama.cpp", DEFAULT_POLICY, home, precision=precision)
    pool.sync(
        [ServedAdapter(name="m", target=adapter.target, tier="tier1", version=adapter.version, path=str(adapter_dir))]
    )
    pool.warm("m", rows[0]["prompt"])
    answers, ttft, speed = [], [], []
    for i, row in enumerate(rows):
        stats = StreamStats()
        answers.append("".join(pool.stream("m", row["prompt"], max_tokens, 0.0, stats)))
        ttft.append(stats.ttft_ms)
        if stats.tokens_per_second:
            speed.append(stats.tokens_per_second)
        if (i + 1) % 10 == 0:
            print(f"{precision}: {i + 1}/{len(rows)} answered", file=sys.stderr)
    return {
        "answers": answers,
        "actions": [(parse_decision(a) or (None, None))[0] for a in answers],
        "ttft_ms_p50": round(statistics.median(t for t in ttft if t is not None), 1),
        "tokens_per_s_p50": round(statistics.median(speed), 1) if speed else None,
        "gguf_mib": round(pool.gguf_path.stat().st_size / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--species", required=True)
    parser.add_argument("--kind", default="srl_rlvr", help="which adapter of the registry (default: SRL→RLVR)")
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args(argv)

    rows = held_out_rows(args.home, args.species)
    adapter, adapter_dir = newest_adapter(args.home, args.species, args.kind)
    cases = [EvalCase(row=r, encounter=Encounter.model_validate(r["encounter"])) for r in rows]
    served = {p: serve_all(p, args.home, adapter, adapter_dir, rows, args.max_tokens) for p in PRECISIONS}
    scored = {p: score_policy(cases, served[p]["answers"], "direct").metrics for p in PRECISIONS}
    same = [a == b for a, b in zip(served["float32"]["actions"], served["int8"]["actions"])]
    agreement = sum(same) / len(same)
    table = []
    for p in PRECISIONS:
        m = scored[p]
        table.append(
            [
                p,
                served[p]["gguf_mib"],
                m.decision_accuracy.cell(),
                m.format_rate.cell(),
                m.in_character_rate.cell(),
                m.line_grounding.cell(),
                served[p]["ttft_ms_p50"],
                served[p]["tokens_per_s_p50"],
            ]
        )
    out = {
        "species": args.species,
        "adapter": adapter.version,
        "held_out": len(rows),
        "decision_agreement": round(agreement, 4),
        "machine": machine(),
        "commit": commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "precisions": {
            p: {k: v for k, v in served[p].items() if k != "answers"} | {"metrics": scored[p].model_dump()}
            for p in PRECISIONS
        },  # fmt: skip
        "disagreements": [
            {"encounter_id": r["encounter_id"], "float32": a, "int8": b}
            for r, a, b in zip(rows, served["float32"]["actions"], served["int8"]["actions"])
            if a != b
        ],
    }
    m = out["machine"]
    md = "\n".join(
        [
            f"# int8 against float32 serving: {args.species} ({out['date']})",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores. Commit `{out['commit']}`. Adapter `{adapter.version[:12]}` "
            f"({args.kind}), llama.cpp, greedy, one stream, {len(rows)} held-out encounters, up to "
            f"{args.max_tokens} new tokens. Run with `python -m bench.serving_precision --species {args.species}`.",
            "",
            f"**Decision agreement of int8 with float32: {agreement:.1%}** ({sum(same)} of {len(same)}; target 98%).",
            "",
            markdown_table(
                [
                    "precision",
                    "GGUF MiB",
                    "decision acc.",
                    "format",
                    "in character",
                    "grounding",
                    "TTFT p50 ms",
                    "tokens/s p50",
                ],
                table,
            ),  # fmt: skip
            "",
        ]
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"serving-precision-{args.species}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str))
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
