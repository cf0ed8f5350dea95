"""What a benchmark ran on and from which commit: in every result file, so a number is read with its machine."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from training.model_loading import bf16_supported


def machine() -> dict:
    import torch

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
        "bf16": bf16_supported(),  # float32 without it: about 3.5x the seconds of a supervised step
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def commit() -> str:
    return subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).resolve().parent
    ).stdout.strip()
