"""Deployment from the command line, on the same registry the `deployed_adapter` asset writes.

    python -m srl_assets.deploy status   [--species vampire]
    python -m srl_assets.deploy rollback --species vampire [--tier tier1] [--npc count_orlok] [--reason "..."]
    python -m srl_assets.deploy lineage  --species vampire [--tier tier1] [--npc count_orlok]
    python -m srl_assets.deploy vllm-config [--out vllm.json]

A rollback restores the previous blue in one step and is one more append-only record; a running
server (`make serve`) picks it up within seconds.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from srl_assets.resources import embedded_resources
from srl_forge.deployment import vllm_config
from srl_forge.errors import InputError
from srl_forge.registry import TIERS, RegistryError, deployment_target


def _registry_and_tiers():
    resources = embedded_resources()
    deployment, artifacts = resources["deployment"], resources["artifacts"]
    return deployment.open(), deployment.tiers(), artifacts.store()


def _print_status(registry, target_filter: str | None) -> None:
    slots = {(t, tier): a for t, tier, a in registry.blue_slots()}
    targets = sorted({e.target for e in registry.events()})
    for target in targets:
        if target_filter and target != target_filter and not target.startswith(f"{target_filter}/"):
            continue
        for tier in TIERS:
            events = registry.events(target, tier)
            if not events:
                continue
            blue = slots.get((target, tier))
            green = registry.green(target, tier)
            last = events[-1]
            print(
                f"{target:28s} {tier}: blue {blue.version[:12] if blue else '-':12s} green {(green or '-')[:12]:12s} "
                f"last: {last.action} {last.at:%Y-%m-%d %H:%M} ({last.reason[:90]})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="blue and green per target and tier")
    status.add_argument("--species")
    for name in ("rollback", "lineage"):
        p = sub.add_parser(name)
        p.add_argument("--species", required=True)
        p.add_argument("--npc")
        p.add_argument("--tier", choices=TIERS)
        if name == "rollback":
            p.add_argument("--reason", default="manual rollback")
    vllm = sub.add_parser("vllm-config", help="the vLLM multi-LoRA servers for every blue slot")
    vllm.add_argument("--out")
    args = parser.parse_args(argv)
    try:
        registry, tiers, store = _registry_and_tiers()
        if args.command == "status":
            _print_status(registry, args.species)
            return 0
        if args.command == "vllm-config":
            config = vllm_config(registry, tiers, lambda uri: str(store.local_path(uri)))
            text = json.dumps(config, indent=2)
            if args.out:
                Path(args.out).write_text(text + "\n", encoding="utf-8")
            print(text)
            return 0
        target = deployment_target(args.species, args.npc)
        tier = args.tier or ("tier3" if args.npc else "tier1")
        if args.command == "rollback":
            event = registry.rollback(target, tier, triggered_by=f"cli:{getpass.getuser()}", reason=args.reason)
            print(
                f"{target} {tier}: blue is {event.version[:12]} again (was {event.previous_blue[:12]}); "
                f"record #{event.event_id}"
            )
            return 0
        blue = registry.blue(target, tier)
        if blue is None:
            print(f"nothing is deployed for {target} on {tier}", file=sys.stderr)
            return 1
        print(json.dumps([a.model_dump(mode="json") for a in registry.lineage(blue)], indent=2))
        return 0
    except (RegistryError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
