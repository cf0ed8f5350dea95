"""The learning benchmark: `make bench-learning SPECIES="vampire werewolf"` (or
`python -m bench.learning --species vampire werewolf --budget standard`).

Trains the given budget (default `standard`: about an hour per species on 2 CPU cores) for each
species in a fresh home folder, evaluates on *all* of the held-out split, and writes
`bench/results/learning-<species>-<budget>.{json,md}`: the comparison table with 95% intervals, the
reference policies, the target and whether it was met, seconds per asset and the machine.

Target on the embedded default model: SRL→RLVR decision accuracy >= best constant + 0.30, and >=
RLVR-only. The numbers are written as measured, met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench.run import RESULTS, run

TARGET_MARGIN_OVER_CONSTANT = 0.30


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def verdict(report: dict) -> dict:
    results = report["results"]

    def acc(name):
        return results[name]["metrics"]["decision_accuracy"]

    constant, srl_rlvr, rlvr_only = acc("best_constant")["value"], acc("srl_rlvr"), acc("rlvr_only")
    return {
        "best_constant_accuracy": constant,
        "srl_rlvr_accuracy": srl_rlvr,
        "rlvr_only_accuracy": rlvr_only,
        "beats_constant_by_target": srl_rlvr["value"] >= constant + TARGET_MARGIN_OVER_CONSTANT,
        "beats_constant_beyond_noise": srl_rlvr["low"] > constant,
        "not_below_rlvr_only": srl_rlvr["value"] >= rlvr_only["value"],
    }


def to_markdown(out: dict) -> str:
    v = out.get("verdict")
    lines = [f"# Learning benchmark: {out['species']}, `{out['budget']}` budget ({out['date']})", "",
             f"Machine: {out['machine']['cpu']}, {out['machine']['cores']} cores, torch {out['machine']['torch']} "
             f"({out['machine']['torch_threads']} threads), CUDA {out['machine']['cuda']}", "",
             f"Whole job: {out['total_seconds']} s. Success: {out['success']}.", ""]
    if out.get("evaluation"):
        ev = out["evaluation"]
        lines += [ev["scope"], "", ev["table"], ""]
    if v:
        lines += ["## Target", "",
                  f"SRL→RLVR decision accuracy {v['srl_rlvr_accuracy']['value']:.2f} "
                  f"[{v['srl_rlvr_accuracy']['low']:.2f}, {v['srl_rlvr_accuracy']['high']:.2f}] vs best constant "
                  f"{v['best_constant_accuracy']:.2f} (+{TARGET_MARGIN_OVER_CONSTANT:.2f} wanted: "
                  f"{'met' if v['beats_constant_by_target'] else 'not met'}; above the constant beyond the interval: "
                  f"{'yes' if v['beats_constant_beyond_noise'] else 'no'}) and vs RLVR-only "
                  f"{v['rlvr_only_accuracy']['value']:.2f} ({'not below' if v['not_below_rlvr_only'] else 'below'}).", ""]
    lines += ["## Seconds per step", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {s} |" for k, s in out["asset_seconds"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", nargs="+", default=["vampire"])
    parser.add_argument("--budget", default="standard", choices=["quick", "standard", "full"])
    parser.add_argument("--home", help="home folder to use (default: a fresh temporary one per species)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ["SRL_FORGE_TRAINING_BUDGET"] = args.budget
    os.environ.setdefault("SRL_FORGE_EVALUATION_ENCOUNTERS", "all")  # the benchmark scores the whole held-out split
    for species in args.species:
        home = Path(args.home) / species if args.home else Path(tempfile.mkdtemp(prefix=f"srl-learning-{species}-"))
        report = run(species, home)
        out = {**report, "budget": args.budget, "machine": machine(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        evaluation = report.get("evaluation_report")
        if evaluation:
            out["evaluation"] = {k: evaluation[k] for k in ("scope", "table", "held_out_encounters", "held_out_total",
                                                            "constant_action")}
            out["evaluation"]["results"] = {name: r["metrics"] for name, r in evaluation["results"].items()}
            out["evaluation"]["examples"] = {name: r["examples"] for name, r in evaluation["results"].items()}
            out["verdict"] = verdict(evaluation)
        stem = RESULTS / f"learning-{species}-{args.budget}"
        stem.with_suffix(".json").write_text(json.dumps({k: v for k, v in out.items() if k != "evaluation_report"},
                                                        indent=2, default=str))
        stem.with_suffix(".md").write_text(to_markdown(out))
        print(to_markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
