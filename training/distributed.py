"""Runs a training job entry point on every GPU of every instance, under torchrun.

`python -m training.distributed --processes-per-host auto training.srl --job job.json` starts one process
per GPU (`auto`; or a number), each running `python -m training.srl --job job.json`; TRL's trainers
(through accelerate) see torchrun's environment and train data-parallel; rank 0 writes the adapter and
metrics (`training.grpo_runner.is_main_process`). On a multi-instance SageMaker job the instances are
read from `/opt/ml/input/config/resourceconfig.json`: the first host is the rendezvous, each instance
its node rank. The SageMaker launcher uses this entry point when `processes_per_host` or
`instance_count` asks for more than one process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SAGEMAKER_RESOURCE_CONFIG = Path("/opt/ml/input/config/resourceconfig.json")
RENDEZVOUS_PORT = 29500


def processes_on_this_host(requested: str) -> int:
    if requested != "auto":
        return max(1, int(requested))
    import torch

    return max(1, torch.cuda.device_count())


def torchrun_arguments(
    module: str, module_args: list[str], processes_per_host: int, resource_config: dict | None = None
) -> list[str]:
    """torchrun's command line: standalone on one host, else a static rendezvous at the first host."""
    hosts = (resource_config or {}).get("hosts") or []
    if len(hosts) <= 1:
        placement = ["--standalone", "--nnodes=1"]
    else:
        current = resource_config["current_host"]
        placement = [
            f"--nnodes={len(hosts)}",
            f"--node_rank={hosts.index(current)}",
            f"--master_addr={hosts[0]}",
            f"--master_port={RENDEZVOUS_PORT}",
        ]
    return [*placement, f"--nproc_per_node={processes_per_host}", "-m", module, *module_args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes-per-host", default="auto", help="'auto' (one per GPU, at least one) or a number")
    parser.add_argument("module", help="the job entry point, e.g. training.srl or training.rlvr")
    parser.add_argument("module_args", nargs=argparse.REMAINDER, help="its arguments, e.g. --job job.json")
    args = parser.parse_args(argv)
    config = json.loads(SAGEMAKER_RESOURCE_CONFIG.read_text()) if SAGEMAKER_RESOURCE_CONFIG.exists() else None
    from torch.distributed.run import main as torchrun

    torchrun(torchrun_arguments(args.module, args.module_args, processes_on_this_host(args.processes_per_host), config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
