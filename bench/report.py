"""Where benchmark results go: `bench/results/<name>-<date>T<HHMM>.{json,md}`, machine included."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import commit, machine

RESULTS = Path(__file__).resolve().parent / "results"


def write_report(name: str, out: dict, markdown) -> Path:
    """Adds the date, the machine and the commit to `out`, writes both files, prints the markdown; returns the
    stem."""
    out = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), "commit": commit(), **out}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{name}-{out['date'][:10]}T{out['date'][11:13]}{out['date'][14:16]}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    text = markdown(out)
    stem.with_suffix(".md").write_text(text)
    print(text)
    return stem


def machine_line(out: dict) -> str:
    m = out["machine"]
    at = f", commit `{out['commit']}`" if out.get("commit") else ""
    return f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}; {out['date']}{at}."
