"""What a benchmark ran on and from which commit: in every result file, so a number is read with its machine."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

import torch

from training.model_loading import bf16_supported


def machine() -> dict:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "bf16": bf16_supported(),  # native only; float32 without it: about twice the seconds of a supervised step
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def commit() -> str:
    return subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent
    ).stdout.strip()


# What decides what a policy learns: the code, the data and the pins. Two learning results whose training code
# version is the same came from the same training code, whatever else changed between their commits.
LEARNING_INPUTS = (
    "training",
    "srl_forge",
    "srl_assets",
    "asset_checks",
    "lore",
    "rules",
    "voices",
    "game_state",
    "pyproject.toml",
    "constraints.txt",
)


def training_code_version(revision: str = "HEAD", repo: Path = Path(__file__).resolve().parent.parent) -> str:
    """A digest of git's tree ids of `LEARNING_INPUTS` at `revision` ("-dirty" when the working tree differs
    there), so results trained at different commits can be shown to share their training code."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=repo, check=True).stdout

    trees = [git("rev-parse", f"{revision}:{path}").strip() for path in LEARNING_INPUTS]
    version = hashlib.sha256(" ".join(trees).encode()).hexdigest()[:12]
    dirty = revision == "HEAD" and git("status", "--porcelain", "--", *LEARNING_INPUTS).strip()
    return version + ("-dirty" if dirty else "")
