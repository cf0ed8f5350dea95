"""End to end: the webserver on 127.0.0.1 loads the code location, one species partition is launched
through GraphQL and succeeds, and headless Chromium renders the asset graph with the expected assets.
The screenshot is kept in test-artifacts/ui-asset-graph.png."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
EXPECTED_GROUPS = [
    "sources",
    "lore",
    "rules",
    "player_history",
    "encounters",
    "trajectories",
    "datasets",
    "training",
    "evaluation",
    "ablations",
    "deployment",
    "personas",
]
EXPECTED_ASSETS = [
    "lore",
    "rules",
    "player_interactions",
    "encounters",
    "expert_trajectories",
    "srl_dataset",
    "rlvr_dataset",
    "srl_checkpoint",
    "rlvr_checkpoint",
    "rlvr_only_checkpoint",
    "sft_only_checkpoint",
    "evaluation",
    "ablation_evaluation",
    "deployed_adapter",
    "adapter_performance",
    "persona_adapter",
    "deployed_persona",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


@pytest.fixture
def webserver(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Runs launch straight from the webserver (no daemon, so no sensor starts training in the background).
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SRL_FORGE_HOME": str(tmp_path / "forge"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            str(REPO / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "webserver.log", "w"),
        start_new_session=True,
    )  # its own process group: the whole tree is stopped below
    try:
        deadline = time.time() + 120
        while True:
            try:
                data = graphql(
                    port,
                    "{ workspaceOrError { ... on Workspace { locationEntries { name "
                    "locationOrLoadError { __typename } } } } }",
                )
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    break
            except (OSError, AssertionError, KeyError):
                pass
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError(
                    "webserver did not load the code location:\n" + (tmp_path / "webserver.log").read_text()[-3000:]
                )
            time.sleep(1)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_launch_one_species_and_render_the_asset_graph(webserver):
    port = webserver
    repo = {"repositoryLocationName": "srl_forge", "repositoryName": "__repository__"}
    graphql(
        port,
        """mutation($repo: RepositorySelector!) {
        addDynamicPartition(repositorySelector: $repo, partitionsDefName: "species", partitionKey: "vampire") {
          __typename } }""",
        {"repo": repo},
    )
    launched = graphql(
        port,
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
          __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {
                    **repo,
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": ["lore"]}, {"path": ["rules"]}],
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "vampire"}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.time() + 300
    status = None
    while time.time() < deadline:
        status = graphql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})[
            "runOrError"
        ]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS"

    graphql(port, "mutation { setNuxSeen }")  # else a welcome dialog covers the page
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "ui-asset-graph.png"
    url = f"http://127.0.0.1:{port}/asset-groups"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={ARTIFACTS / '.chromium-profile'}",
        "--window-size=1600,1000",
        "--virtual-time-budget=20000",
    ]
    lineage = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    subprocess.run(flags + [f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
    assert "Global asset lineage" in lineage
    missing_groups = [g for g in EXPECTED_GROUPS if f">{g}<" not in lineage]
    assert not missing_groups, f"the lineage lacks the groups {missing_groups}"
    # the catalog is a virtualised list: a window tall enough to render every row
    tall = [f if not f.startswith("--window-size=") else "--window-size=1600,4000" for f in flags]
    catalog = subprocess.run(
        tall + ["--dump-dom", f"http://127.0.0.1:{port}/assets"], capture_output=True, text=True, timeout=180
    ).stdout
    missing = [name for name in EXPECTED_ASSETS if f">{name}<" not in catalog]
    assert not missing, f"the asset catalog lacks {missing}"
