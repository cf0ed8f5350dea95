"""`make serve`: the OpenAI-compatible server for every blue adapter, on the embedded defaults.

    python -m srl_assets.serve [--host 127.0.0.1] [--port 8000]

Reads the same registry, artifacts, game state and player-log folder as the pipeline (under
SRL_FORGE_HOME), hot-reloads on promotions and rollbacks, and appends every answer to the player logs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from serving.server import ForgeServer, ServingConfig, build_app
from srl_assets.resources import embedded_resources, resolved
from srl_assets.settings import load_settings


def serving_config(**overrides):
    r, settings = embedded_resources(), load_settings()
    fields = dict(
        registry=resolved(r["deployment"].registry),
        tiers_file=r["deployment"].tiers_file,
        artifacts_root=r["artifacts"].root,
        artifacts_cache=r["artifacts"].cache_dir,
        player_logs_root=resolved(r["player_logs"].root),
        game_state_db=resolved(r["game_state_db"].location),
        lore_root=r["project_files"].lore_root,
        lore_limits=r["project_files"].lore_limits,
        rules_root=r["project_files"].rules_root,
        voices_root=r["teachers"].voices_root,
        model_cache=r["training"].model_cache,
        engine=r["deployment"].serving_engine,
        api_key=settings.serve_api_key,
        max_request_bytes=settings.serve_max_request_bytes,
        request_timeout_seconds=settings.serve_request_timeout_seconds,
        serve_green=settings.serve_green,
        precision=settings.serve_precision,
    )
    return ServingConfig(**(fields | overrides))


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = ForgeServer(serving_config(threads=args.threads))
    if not server.monsters:
        print(
            "nothing is deployed yet: run `make demo SPECIES=vampire` first (the server keeps watching the "
            "registry and starts serving as soon as an adapter is promoted)",
            file=sys.stderr,
        )
    else:
        print("serving: " + ", ".join(sorted(server.monsters)), file=sys.stderr)
    print(f"playground: http://{args.host}:{args.port}/playground", file=sys.stderr)
    server.watch()
    try:
        uvicorn.run(build_app(server), host=args.host, port=args.port, log_level="info")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
