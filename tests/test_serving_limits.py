"""The server as production runs it: the rules enforced at serve time, an API key, bounded requests, a time
limit per answer, Prometheus metrics, and a burst of mixed requests on loopback it survives. The model's text
comes from `ScriptedEngine`; everything else (rules engine, guard, logs, HTTP) is the real server."""

import asyncio
import logging
import time
from contextlib import ExitStack
from pathlib import Path

import openai
import pytest

from srl_forge.player_logs import read_player_logs
from tests.helpers import local_serving_config, serving_on_loopback
from tests.scripted_engine import ScriptedEngine

ROOT = Path(__file__).resolve().parent.parent
BASE = "smollm2-135m-instruct"
GARLIC_NIGHT = {
    "game": {"time_of_day": "night"},
    "npc": {"species": "vampire", "tier": 1},
    "player": {"action": "talk", "items": ["garlic"], "faction": "hunters"},
    "location": {"kind": "village"},
}
FEEDS = '<think>Warm blood, and close.</think>\nACTION: feed\nSAY: "Come closer, little one."'
CHARMS = '<think>Garlic; I will not feed. A word will do.</think>\nACTION: charm\nSAY: "Sit, and tell me of the road."'
API_KEY = "sk-test-0123456789abcdef"


class Running:
    def __init__(self, server, port, engine):
        self.server, self.port, self.engine = server, port, engine
        self.url = f"http://127.0.0.1:{port}"

    def client(self, api_key: str = "local", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, **kwargs)

    def records(self):
        records, problems = read_player_logs(Path(self.server.config.player_logs_root), "vampire")
        assert not problems
        return records

    def metrics(self, headers: dict | None = None) -> str:
        import httpx2

        response = httpx2.get(f"{self.url}/metrics", headers=headers or {})
        assert response.status_code == 200
        return response.text


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def serve(tmp_path):
    """Start a real server on loopback over a registry with the vampire adapter blue on tier 1 (rules
    replaced) and tier 2 (rules only logged). Call it with ServingConfig fields and the engine."""
    from serving.server import ForgeServer, build_app
    from srl_forge.artifacts import LocalArtifactStore
    from srl_forge.deployment import deploy_candidate, load_tiers
    from srl_forge.game_state import GameStateStore
    from srl_forge.registry import AdapterVersion, open_registry

    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        "tiers:\n"
        f"  tier1: {{base_model: {BASE}, serves: species, ttft_budget_ms: 100000, rules_enforcement: replace}}\n"
        f"  tier2: {{base_model: {BASE}, serves: species, ttft_budget_ms: 100000, rules_enforcement: log}}\n"
    )
    adapter_folder = tmp_path / "adapter"
    adapter_folder.mkdir()
    (adapter_folder / "adapter_config.json").write_text("{}")  # the scripted engine reads no weights
    store = LocalArtifactStore(tmp_path / "artifacts")
    registry = open_registry(tmp_path / "registry.duckdb")
    adapter = registry.register(
        AdapterVersion(
            version="c" * 64,
            target="vampire",
            kind="srl_rlvr",
            base_model=BASE,
            adapter_uri=store.put_directory("adapters", "vampire", adapter_folder, "c" * 64),
            metrics={
                "decision_accuracy": {"value": 0.8, "low": 0.7, "high": 0.9},
                "best_constant_accuracy": 0.25,
                "guardrail_violations": 0,
            },
        )
    )
    outcomes = {o.tier: o.result for o in deploy_candidate(registry, load_tiers(tiers), adapter, "species", 10, "t")}
    assert outcomes == {"tier1": "promoted", "tier2": "promoted"}
    GameStateStore(str(tmp_path / "state.duckdb")).load_seed(ROOT / "game_state" / "seed.yaml")
    stack = ExitStack()

    def start(engine: ScriptedEngine, **fields) -> Running:
        config = local_serving_config(tmp_path, tiers, tmp_path / "models", **fields)
        server = ForgeServer(config, pool=engine)
        return Running(server, stack.enter_context(serving_on_loopback(build_app(server))), engine)

    with stack:
        yield start


def test_an_action_the_rules_forbid_never_reaches_the_player(serve):
    """Garlic forbids feeding (rule vampire.garlic). A well-formed answer that feeds anyway is replaced on
    the tier that enforces, before a byte of it is sent; the tier that only logs lets it through; both count."""
    running = serve(ScriptedEngine(FEEDS))
    client = running.client()
    chunks = list(
        client.chat.completions.create(
            model="vampire",
            messages=[{"role": "user", "content": "Good evening."}],
            stream=True,
            extra_body={"encounter": GARLIC_NIGHT},
        )
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "feed" not in content and "Come closer" not in content
    assert content.startswith("ACTION: charm\nSAY: ")  # the engine's decision with an expert line
    record = running.records()[-1]
    assert record.npc_action == "charm" and record.npc_line in content
    rules = record.served.rules
    assert rules.model_action == "feed" and not rules.passed and rules.replaced
    assert rules.rule_ids == ("vampire.garlic",) and "garlic" in rules.reasons[0]

    # tier 2 logs only: the player hears the model (the studio chose so), the verdict is kept
    logged = client.chat.completions.create(
        model="vampire@tier2", messages=[{"role": "user", "content": "Hi"}], extra_body={"encounter": GARLIC_NIGHT}
    )
    assert logged.choices[0].message.content.startswith("ACTION: feed\n")
    assert logged.srl_forge["rules"]["passed"] is False and logged.srl_forge["rules"]["enforcement"] == "log"
    assert running.records()[-1].npc_action == "feed"

    # an action the rules allow passes untouched, with its verdict
    running.engine.answer = CHARMS
    allowed = client.chat.completions.create(
        model="vampire", messages=[{"role": "user", "content": "Hi"}], extra_body={"encounter": GARLIC_NIGHT}
    )
    assert allowed.choices[0].message.content == 'ACTION: charm\nSAY: "Sit, and tell me of the road."'
    assert allowed.srl_forge["rules"] == {
        "model_action": "charm",
        "passed": True,
        "rule_ids": [],
        "reasons": [],
        "enforcement": "replace",
    }
    text = running.metrics()
    assert metric(text, "srl_forge_rules_violations_total", model="vampire", enforcement="replace") == 1
    assert metric(text, "srl_forge_rules_violations_total", model="vampire@tier2", enforcement="log") == 1
    assert metric(text, "srl_forge_requests_total", model="vampire", status="ok") == 2


def test_the_api_key_is_required_and_never_logged(serve, caplog):
    from serving.server import ServingConfig

    caplog.set_level(logging.DEBUG)
    running = serve(ScriptedEngine(CHARMS), api_key=API_KEY)
    hi = {"messages": [{"role": "user", "content": "Hi"}], "extra_body": {"encounter": GARLIC_NIGHT}}
    with pytest.raises(openai.AuthenticationError, match="API key is required"):
        running.client().chat.completions.create(model="vampire", **hi)
    with pytest.raises(openai.AuthenticationError):
        running.client("sk-wrong").models.list()
    assert running.client(API_KEY).chat.completions.create(model="vampire", **hi).choices[0].message.content
    import httpx2

    assert httpx2.get(f"{running.url}/health").status_code == 200  # what a load balancer probes
    assert httpx2.get(f"{running.url}/metrics").status_code == 401
    text = running.metrics({"Authorization": f"Bearer {API_KEY}"})
    assert metric(text, "srl_forge_requests_total", model="unknown", status="401") == 3
    assert API_KEY not in caplog.text and API_KEY not in repr(running.server.config)
    assert API_KEY not in ServingConfig.model_validate(running.server.config.model_dump()).model_dump_json()


def test_bad_requests_are_refused_naming_the_field(serve):
    import httpx2

    running = serve(ScriptedEngine(CHARMS), max_new_tokens=32, max_request_bytes=4096)
    client = running.client()
    hi = [{"role": "user", "content": "Hi"}]
    cases = [
        ({"temperature": 5.0}, "temperature"),
        ({"max_tokens": 65}, "max_tokens': at most 64"),  # 2 x max_new_tokens
        ({"max_tokens": 0}, "max_tokens"),
        ({"extra_body": {"encounter": {**GARLIC_NIGHT, "player": {"action": "dance"}}}}, "encounter.player.action"),
    ]
    for fields, named in cases:
        with pytest.raises(openai.BadRequestError, match=named):
            client.chat.completions.create(model="vampire", messages=hi, **fields)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="vampire", messages=[])
    url = f"{running.url}/v1/chat/completions"
    assert "not JSON" in httpx2.post(url, content=b"{nope").json()["detail"]
    huge = httpx2.post(url, json={"model": "vampire", "messages": [{"role": "user", "content": "a" * 5000}]})
    assert huge.status_code == 413 and "at most 4096" in huge.json()["detail"]
    assert not running.engine.prompts  # nothing refused reached the model
    assert not (Path(running.server.config.player_logs_root) / "vampire").exists()  # nor the logs
    text = running.metrics()
    assert metric(text, "srl_forge_requests_total", model="vampire", status="400") == 2  # the model was known
    assert metric(text, "srl_forge_requests_total", model="unknown", status="400") == 4
    assert metric(text, "srl_forge_requests_total", model="unknown", status="413") == 1


def test_an_answer_past_the_time_limit_ends_with_the_engines_decision(serve):
    engine = ScriptedEngine("<think>" + "I weigh the hunters and the garlic and the hour. " * 20, 4, 0.01)
    running = serve(engine, request_timeout_seconds=0.3, max_new_tokens=400)
    started = time.perf_counter()
    reply = running.client().chat.completions.create(
        model="vampire", messages=[{"role": "user", "content": "Hi"}], extra_body={"encounter": GARLIC_NIGHT}
    )
    assert time.perf_counter() - started < 5
    assert reply.choices[0].message.content.startswith("ACTION: charm\nSAY: ")
    assert engine.pieces_sent < 100  # generation stopped, it did not run on to the end (250 pieces)
    record = running.records()[-1]
    assert record.served.timed_out and record.served.rules is None and not record.served.format_ok
    assert metric(running.metrics(), "srl_forge_timeouts_total", model="vampire") == 1


def test_the_server_stays_up_under_a_burst_of_mixed_requests(serve):
    """60 requests at once on loopback, good and bad mixed: every good one is answered and logged, every bad
    one refused with its status, and the server answers afterwards."""
    import httpx2

    running = serve(ScriptedEngine(CHARMS), max_request_bytes=8192)
    url = f"{running.url}/v1/chat/completions"
    good = {"model": "vampire", "messages": [{"role": "user", "content": "Hi"}], "encounter": GARLIC_NIGHT}
    kinds = {
        "good": (good, 200),
        "unknown_model": ({**good, "model": "ghoul"}, 404),
        "too_large": ({**good, "messages": [{"role": "user", "content": "x" * 9000}]}, 413),
        "bad_field": ({**good, "temperature": -1}, 400),
    }
    plan = [name for _ in range(15) for name in kinds]

    async def burst():
        async with httpx2.AsyncClient(timeout=60) as http:
            return await asyncio.gather(*(http.post(url, json=kinds[name][0]) for name in plan))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [kinds[name][1] for name in plan]
    answers = [r.json()["choices"][0]["message"]["content"] for r, name in zip(responses, plan) if name == "good"]
    assert answers == ['ACTION: charm\nSAY: "Sit, and tell me of the road."'] * 15
    assert len(running.records()) == 15 and len({r.response_id for r in running.records()}) == 15
    assert httpx2.get(f"{running.url}/health").json()["models"] == ["vampire", "vampire@tier2"]
    text = running.metrics()
    assert metric(text, "srl_forge_requests_total", model="vampire", status="ok") == 15
    assert metric(text, "srl_forge_ttft_seconds_count", model="vampire") == 15
    assert metric(text, "srl_forge_served_models") == 2
