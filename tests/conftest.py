import os
import re
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

# Before the project's modules: they import huggingface_hub and transformers, which read these at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from serving.server import ForgeServer, build_app
from srl_forge.artifacts import LocalArtifactStore, open_artifact_store
from srl_forge.deployment import deploy_candidate, load_tiers
from srl_forge.game_state import GameStateStore
from srl_forge.registry import AdapterVersion, open_registry
from tests.helpers import (
    LORE_ROOT,
    RULES_ROOT,
    SEED,
    VOICES_ROOT,
    RunningServer,
    local_serving_config,
    serving_on_loopback,
)
from tests.tiny_policy import make_tiny_policy


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """A writable copy of lore/, rules/, voices/ and the game-state seed, for tests that edit inputs."""
    root = tmp_path / "project"
    shutil.copytree(LORE_ROOT, root / "lore")
    shutil.copytree(RULES_ROOT, root / "rules")
    shutil.copytree(VOICES_ROOT, root / "voices")
    (root / "game_state").mkdir()
    shutil.copy(SEED, root / "game_state" / "seed.yaml")
    return root


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Where the SmolLM2 GGUF is converted once per test session (~20 s)."""
    return tmp_path_factory.mktemp("model_cache")


@pytest.fixture(scope="session")
def tiny_policy(model_cache, tmp_path_factory) -> str:
    return make_tiny_policy(tmp_path_factory.mktemp("tiny") / "policy", model_cache)


_exit_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


def pytest_unconfigure(config):
    # DuckDB's nanobind bindings print "leaked instances" warnings during interpreter teardown
    # when the ML stack is loaded alongside it. They are harmless but land after pytest's closing
    # line, which CI reads; everything is reported by now, so end the process here.
    if config.pluginmanager.hasplugin("terminalreporter") and not hasattr(config, "workerinput"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL 16 (with pgvector) from pgserver, for the production backends."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(str(tmp_path_factory.mktemp("pg")), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto's server) on 127.0.0.1, with throwaway credentials."""

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    patch = pytest.MonkeyPatch()
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        patch.setenv(name, value)
    patch.delenv("AWS_PROFILE", raising=False)
    yield f"http://{host}:{port}"
    patch.undo()
    server.stop()


@pytest.fixture
def s3_root(s3_endpoint, request):
    """A fresh bucket per test: `s3://<bucket>/forge`."""

    bucket = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/forge"


@pytest.fixture(params=["local", "s3"])
def artifact_store(request, tmp_path):
    """The same artifact tests on the local folder and on S3."""

    if request.param == "local":
        return open_artifact_store(tmp_path / "artifacts")
    return open_artifact_store(
        request.getfixturevalue("s3_root"), tmp_path / "s3-cache", request.getfixturevalue("s3_endpoint")
    )


@pytest.fixture(params=["duckdb", "postgresql"])
def database_location(request, tmp_path):
    """The same store tests on the embedded DuckDB file and on a real PostgreSQL (with pgvector)."""
    if request.param == "duckdb":
        return str(tmp_path / "store.duckdb")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh database per test on the shared server."""

    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    postgres_server.psql(f"DROP DATABASE IF EXISTS {name};")
    postgres_server.psql(f"CREATE DATABASE {name};")
    return postgres_server.get_uri(name)


@pytest.fixture
def scripted_server(tmp_path):
    """Start a real `ForgeServer` on loopback whose model text comes from a `ScriptedEngine`: call it with the
    engine and ServingConfig fields. The registry has the vampire adapter blue on tier 1 (rules replaced) and
    tier 2 (rules only logged), and a newer candidate the gates held back in green on both."""

    base = "smollm2-135m-instruct"
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        "tiers:\n"
        f"  tier1: {{base_model: {base}, serves: species, ttft_budget_ms: 100000, rules_enforcement: replace}}\n"
        f"  tier2: {{base_model: {base}, serves: species, ttft_budget_ms: 100000, rules_enforcement: log}}\n"
    )
    adapter_folder = tmp_path / "adapter"
    adapter_folder.mkdir()
    (adapter_folder / "adapter_config.json").write_text("{}")  # the scripted engine reads no weights
    store = LocalArtifactStore(tmp_path / "artifacts")
    registry = open_registry(tmp_path / "registry.duckdb")

    def publish(version: str, accuracy: float) -> dict[str, str]:
        adapter = registry.register(
            AdapterVersion(
                version=version,
                target="vampire",
                kind="srl_rlvr",
                base_model=base,
                adapter_uri=store.put_directory("adapters", "vampire", adapter_folder, version),
                metrics={
                    "decision_accuracy": {"value": accuracy, "low": accuracy - 0.1, "high": accuracy + 0.1},
                    "best_constant_accuracy": 0.25,
                    "guardrail_violations": 0,
                },
            )
        )
        return {o.tier: o.result for o in deploy_candidate(registry, load_tiers(tiers), adapter, "species", 10, "t")}

    assert publish("c" * 64, 0.8) == {"tier1": "promoted", "tier2": "promoted"}
    assert publish("d" * 64, 0.2) == {"tier1": "held", "tier2": "held"}  # below the constant: stays in green
    GameStateStore(str(tmp_path / "state.duckdb")).load_seed(SEED)
    stack = ExitStack()

    def start(engine, **fields) -> RunningServer:
        config = local_serving_config(tmp_path, tiers, tmp_path / "models", **fields)
        server = ForgeServer(config, pool=engine)
        return RunningServer(server, stack.enter_context(serving_on_loopback(build_app(server))), engine)

    with stack:
        yield start
