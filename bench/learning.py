"""The learning benchmark: `make bench-learning` (every species) or
`python -m bench.learning --species vampire werewolf --budget standard`.

For each species, in a fresh home folder, runs the `learning_pipeline` job: the whole chain (lore to the
deployed adapter) plus the ablations (SFT-only, RLVR-only) under the budget's recipe, and scores every
policy on *all* of the held-out split. Writes `bench/results/learning-<species>-<budget>.{json,md,png}`:
the comparison table with 95% intervals next to the best constant action, a random acceptable action, the
feature classifier (what the data can teach) and the rules engine (the ceiling); the seconds each adapter
trained; the learning curves through every phase; the target and whether it was met; the machine and the
commit that trained it.

Target (issue 20), on the embedded default model: SRL→RLVR decision accuracy >= best constant + 0.40 with its
95% interval's lower bound above the constant's upper bound, and >= SFT-only and >= RLVR-only. The numbers
are written as measured, met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import commit, machine, training_code_version
from bench.run import RESULTS, run
from srl_forge.tables import markdown_table
from training.plots import figure, png_bytes

TARGET_MARGIN_OVER_CONSTANT = 0.40
SPECIES = ("vampire", "werewolf", "zombie", "ghoul", "lich")
ADAPTERS = {
    "srl_checkpoint": "srl",
    "rlvr_checkpoint": "srl_rlvr",
    "rlvr_only_checkpoint": "rlvr_only",
    "sft_only_checkpoint": "sft_only",
}


def verdict(results: dict) -> dict:
    def acc(name):
        return results[name]["metrics"]["decision_accuracy"] if name in results else None

    constant, srl_rlvr = acc("best_constant"), acc("srl_rlvr")
    out = {
        "best_constant_accuracy": constant,
        "srl_rlvr_accuracy": srl_rlvr,
        "target": constant["value"] + TARGET_MARGIN_OVER_CONSTANT,
        "beats_constant_by_target": srl_rlvr["value"] >= constant["value"] + TARGET_MARGIN_OVER_CONSTANT,
        "beats_constant_beyond_interval": srl_rlvr["low"] > constant["high"],
    }
    for ablation in ("sft_only", "rlvr_only"):
        if acc(ablation) is not None:
            out[f"{ablation}_accuracy"] = acc(ablation)
            out[f"not_below_{ablation}"] = srl_rlvr["value"] >= acc(ablation)["value"]
    out["met"] = all(v for k, v in out.items() if k.startswith(("beats_", "not_below_")))
    return out


def curves_png(training: dict, title: str) -> bytes:
    """Validation decision accuracy (solid) and format (dotted) through training, one colour per adapter."""

    fig, ax = figure(7, 3.4)
    for (asset, data), colour in zip(training.items(), ("#4c72b0", "#dd8452", "#55a868", "#c44e52")):
        points = data["learning_curve"]
        xs = [p["seconds"] for p in points]
        ax.plot(xs, [p["decision_accuracy"] for p in points], marker="o", color=colour, label=ADAPTERS[asset])
        ax.plot(xs, [p["format_rate"] for p in points], linestyle=":", color=colour)
    ax.set_xlabel("training seconds (each adapter from its own start; SRL→RLVR starts from the SRL adapter)")
    ax.set_ylabel("validation")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return png_bytes(fig)


def _interval(m: dict) -> str:
    return f"{m['value']:.2f} [{m['low']:.2f}, {m['high']:.2f}]"


def to_markdown(out: dict) -> str:
    m = out["machine"]
    lines = [
        f"# Learning benchmark: {out['species']}, `{out['budget']}` budget ({out['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"CUDA {m['cuda']}, bf16 {m.get('bf16', 'not recorded')}. "
        f"{out.get('note') + '. ' if out.get('note') else ''}Commit `{out['commit']}`"
        + (f", training code `{out['training_code']}` (`bench/machine.py`)" if out.get("training_code") else "")
        + ". "
        f"Run with `{out['command']}`.",
        "",
        f"Whole job: {out['total_seconds']:.0f} s ({out['total_seconds'] / 60:.0f} min). Success: {out['success']}.",
        "",
    ]
    ev = out.get("evaluation")
    if ev:
        lines += [ev["scope"], "", ev["table"], ""]
    v = out.get("verdict")
    if v:
        c = v["best_constant_accuracy"]
        lines += [
            "## Target",
            "",
            f"- SRL→RLVR {_interval(v['srl_rlvr_accuracy'])} against best constant "
            f"+ {TARGET_MARGIN_OVER_CONSTANT:.2f} = "
            f"{v['target']:.2f}: {'met' if v['beats_constant_by_target'] else 'not met'}.",
            f"- Its lower bound {v['srl_rlvr_accuracy']['low']:.2f} above the constant's upper bound "
            f"{c['high']:.2f}: {'yes' if v['beats_constant_beyond_interval'] else 'no'}.",
        ]
        for ablation, name in (("sft_only", "SFT-only"), ("rlvr_only", "RLVR-only")):
            if f"{ablation}_accuracy" in v:
                lines.append(
                    f"- Against {name} {_interval(v[f'{ablation}_accuracy'])}: "
                    f"{'not below' if v[f'not_below_{ablation}'] else 'below'}."
                )
        lines += [f"- All: **{'met' if v['met'] else 'not met'}**.", ""]
    training = out.get("training") or {}
    if training:
        compute = []
        for asset, t in training.items():
            kept = [s["kept_fraction"] for s in t["steps"] if s.get("kept_fraction") is not None]
            zero = [s["zero_std_share"] for s in t["steps"] if s.get("zero_std_share") is not None]
            phases = t.get("phase_seconds", {})
            compute.append(
                [
                    ADAPTERS[asset],
                    t.get("quantization", "none"),
                    f"{t['training_seconds']:.0f}",
                    f"{t['sft']['steps']} ({t['sft']['epochs']:g})",
                    _per_step(phases.get("sft"), t["sft"]["steps"]),
                    t["grpo_steps"],
                    _per_step(phases.get("grpo"), t["grpo_steps"]),
                    f"{t['peak_rss_mib']:.0f}" if t.get("peak_rss_mib") else "",
                    f"{sum(kept) / len(kept) if kept else float('nan'):.2f}",
                    f"{sum(zero) / len(zero) if zero else float('nan'):.2f}",
                ]
            )
        curves = [
            [
                ADAPTERS[asset],
                p["phase"],
                p["step"],
                f"{p['seconds']:.0f}",
                f"{p['decision_accuracy']:.2f}",
                f"{p['format_rate']:.2f}",
                f"{max(p['predictions'].values(), default=0) / max(1, p['rows']):.2f}",
            ]
            for asset, t in training.items()
            for p in t["learning_curve"]
        ]
        lines += [
            "## Compute per adapter",
            "",
            markdown_table(
                [
                    "adapter",
                    "base",
                    "training s",
                    "supervised steps (epochs)",
                    "s / supervised step",
                    "GRPO steps",
                    "s / GRPO step",
                    "peak memory MiB",
                    "mean kept fraction",
                    "mean zero-variance groups",
                ],
                compute,
            ),
            "",
            "SRL→RLVR's seconds are its own stage's; the chain's are SRL's plus SRL→RLVR's. The kept fraction counts "
            "groups whose reward spread is above the dynamic-sampling epsilon; zero-variance groups are those with "
            "no spread at all (TRL's `frac_reward_zero_std`), so 1 - kept can exceed them.",
            "",
            "## Learning curves (validation sample, greedy)",
            "",
            f"![learning curves]({out['stem']}.png)",
            "",
            markdown_table(
                ["adapter", "phase", "step", "seconds", "decision acc.", "format", "most chosen share"], curves
            ),
            "",
        ]
    if out.get("answers"):
        lines += ["## SRL→RLVR's first held-out answers", ""]
        lines += [f"- top `{', '.join(a['top'])}`: `{a['answer']}`" for a in out["answers"]]
        lines.append("")
    if out.get("stepwise_answers"):  # five in the text, twenty in the .json
        lines += ["## The SRL adapter's first answers rolled out step by step", ""]
        lines += [f"- top `{', '.join(a['top'])}`: `{a['answer']}`" for a in out["stepwise_answers"][:5]]
        lines.append("")
    lines += ["## Seconds per step", "", markdown_table(["step", "seconds"], out["asset_seconds"].items())]
    return "\n".join(lines) + "\n"


def _per_step(seconds: float | None, steps: int) -> str:
    """Seconds per step of a phase (its probes included: a learning-curve point costs a few seconds)."""
    return f"{seconds / steps:.1f}" if seconds and steps else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--species", nargs="+", default=list(SPECIES))
    parser.add_argument("--budget", default="standard", choices=["quick", "standard", "full"])
    parser.add_argument("--home", help="home folder to use (default: a fresh temporary one per species)")
    parser.add_argument(
        "--quantization",
        choices=["none", "4bit", "8bit"],
        help="train every stage on a quantized base (QLoRA at 4bit); the results get a -4bit / -8bit suffix",
    )
    parser.add_argument(
        "--note",
        default="",
        help="how the machine was shared, written beside the machine (e.g. 'two species at once, one thread each')",
    )
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ["SRL_FORGE_TRAINING_BUDGET"] = args.budget
    if args.quantization:
        os.environ["SRL_FORGE_TRAINING_QUANTIZATION"] = args.quantization
    suffix = f"-{args.quantization}" if args.quantization and args.quantization != "none" else ""
    os.environ.setdefault("SRL_FORGE_EVALUATION_ENCOUNTERS", "all")  # the benchmark scores the whole held-out split
    for species in args.species:
        home = Path(args.home) / species if args.home else Path(tempfile.mkdtemp(prefix=f"srl-learning-{species}-"))
        stem = RESULTS / f"learning-{species}-{args.budget}{suffix}"
        report = run(species, home, job="learning_pipeline")
        out = {
            **report,
            "budget": args.budget,
            "machine": machine(),
            "commit": commit(),
            "training_code": training_code_version(),
            "stem": stem.name,
            "command": f"python -m bench.learning --species {species} --budget {args.budget}"
            + (f" --quantization {args.quantization}" if args.quantization else ""),
            "note": args.note,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        evaluation = report.get("evaluation_report")
        if evaluation:
            out["evaluation"] = {
                k: evaluation[k] for k in ("scope", "table", "held_out_encounters", "held_out_total", "constant_action")
            }
            out["evaluation"]["results"] = {name: r["metrics"] for name, r in evaluation["results"].items()}
            out["evaluation"]["training_seconds"] = {
                name: r.get("training_seconds") for name, r in evaluation["results"].items()
            }
            out["verdict"] = verdict(evaluation["results"])
            out["answers"] = evaluation["results"]["srl_rlvr"]["examples"]
            if "srl" in evaluation["results"]:  # what the SRL adapter writes rolled out step by step
                out["stepwise_answers"] = evaluation["results"]["srl"]["examples"]
        if report.get("training"):
            stem.with_suffix(".png").write_bytes(
                curves_png(report["training"], f"{species}: validation through training")
            )
        stem.with_suffix(".json").write_text(
            json.dumps({k: v for k, v in out.items() if k != "evaluation_report"}, indent=2, default=str)
        )
        stem.with_suffix(".md").write_text(to_markdown(out))
        print(to_markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
