"""The server as production runs it: the rules enforced at serve time, an API key, bounded requests, a time
limit per answer, Prometheus metrics, and a burst of mixed requests on loopback it survives. The model's text
comes from `ScriptedEngine`; everything else (rules engine, guard, logs, HTTP) is the real server."""

import asyncio
import logging
import time
from pathlib import Path

import httpx2
import openai
import pytest

from serving.server import ForgeServer, ServingConfig
from srl_forge.errors import InputError
from tests.helpers import local_serving_config, metric
from tests.scripted_engine import CHARMS, FEEDS, GARLIC_NIGHT, ScriptedEngine, streamed_chunks, streamed_content

API_KEY = "sk-test-0123456789abcdef"


def test_an_action_the_rules_forbid_never_reaches_the_player(scripted_server):
    """Garlic forbids feeding (rule vampire.garlic). A well-formed answer that feeds anyway is replaced on
    the tier that enforces, before a byte of it is sent; the tier that only logs lets it through; both count."""
    running = scripted_server(ScriptedEngine(FEEDS))
    client = running.client()
    content = streamed_content(streamed_chunks(running, says="Good evening."))
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
    assert allowed.choices[0].message.content == 'ACTION: charm\nSAY: "Sit, mortal, and tell me of the road."'
    assert allowed.srl_forge["rules"] == {
        "model_action": "charm",
        "passed": True,
        "rule_ids": [],
        "reasons": [],
        "enforcement": "replace",
    }
    running.engine.answer = "I am a monster who forgot the format"
    unreadable = client.chat.completions.create(model="vampire", messages=[{"role": "user", "content": "Hi"}])
    assert unreadable.srl_forge["rules"] is None and unreadable.choices[0].message.content.startswith("ACTION: ")
    text = running.metrics()
    assert metric(text, "srl_forge_unreadable_answers_total", model="vampire") == 1  # the refused one is not
    assert metric(text, "srl_forge_rules_violations_total", model="vampire", enforcement="replace") == 1
    assert metric(text, "srl_forge_rules_violations_total", model="vampire@tier2", enforcement="log") == 1
    assert metric(text, "srl_forge_requests_total", model="vampire", status="ok") == 3


def test_the_api_key_is_required_and_never_logged(scripted_server, caplog):
    caplog.set_level(logging.DEBUG)
    running = scripted_server(ScriptedEngine(CHARMS), api_key=API_KEY)
    hi = {"messages": [{"role": "user", "content": "Hi"}], "extra_body": {"encounter": GARLIC_NIGHT}}
    with pytest.raises(openai.AuthenticationError, match="API key is required"):
        running.client().chat.completions.create(model="vampire", **hi)
    with pytest.raises(openai.AuthenticationError):
        running.client("sk-wrong").models.list()
    assert running.client(API_KEY).chat.completions.create(model="vampire", **hi).choices[0].message.content

    assert httpx2.get(f"{running.url}/health").status_code == 200  # what a load balancer probes
    assert httpx2.get(f"{running.url}/metrics").status_code == 401
    text = running.metrics({"Authorization": f"Bearer {API_KEY}"})
    assert metric(text, "srl_forge_requests_total", model="unknown", status="401") == 3
    assert API_KEY not in caplog.text and API_KEY not in repr(running.server.config)
    assert API_KEY not in ServingConfig.model_validate(running.server.config.model_dump()).model_dump_json()


def test_bad_requests_are_refused_naming_the_field(scripted_server):
    running = scripted_server(ScriptedEngine(CHARMS), max_new_tokens=32, max_request_bytes=4096)
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


def test_an_answer_past_the_time_limit_ends_with_the_engines_decision(scripted_server):
    engine = ScriptedEngine("<think>" + "I weigh the hunters and the garlic and the hour. " * 20, 4, 0.01)
    running = scripted_server(engine, request_timeout_seconds=0.3, max_new_tokens=400)
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


def test_an_answer_waiting_for_the_engine_past_the_time_limit_ends_with_the_engines_decision(scripted_server):
    """Behind other answers no token comes to check the limit on: the engine's heartbeats carry it."""
    engine = ScriptedEngine(CHARMS, waits_seconds=30)
    running = scripted_server(engine, request_timeout_seconds=0.5)
    started = time.perf_counter()
    reply = running.client().chat.completions.create(
        model="vampire", messages=[{"role": "user", "content": "Hi"}], extra_body={"encounter": GARLIC_NIGHT}
    )
    assert time.perf_counter() - started < 5
    assert reply.choices[0].message.content.startswith("ACTION: charm\nSAY: ")
    assert engine.pieces_sent == 0
    record = running.records()[-1]
    assert record.served.timed_out and record.served.generated_tokens == 0


@pytest.mark.parametrize("fails_after_pieces", [3, 19])  # in the thinking; after `ACTION: charm` was released
def test_an_engine_failing_mid_answer_ends_with_the_engines_decision_and_is_logged(
    scripted_server, caplog, fails_after_pieces
):
    running = scripted_server(ScriptedEngine(CHARMS, fails_after_pieces=fails_after_pieces))
    with caplog.at_level(logging.ERROR):
        content = streamed_content(streamed_chunks(running))
    assert content.startswith("ACTION: charm\nSAY: ") and content.count("ACTION:") == 1
    record = running.records()[-1]
    assert record.npc_action == "charm" and record.npc_line in content
    assert record.served.engine_error == "RuntimeError: adapter 'vampire' was unloaded mid-answer"
    assert not record.served.format_ok and not record.served.timed_out
    assert "the engine failed" in caplog.text and "unloaded mid-answer" in caplog.text
    metrics = running.metrics()
    assert metric(metrics, "srl_forge_engine_errors_total", model="vampire") == 1
    assert metric(metrics, "srl_forge_unreadable_answers_total", model="vampire") == 0


def test_the_server_stays_up_under_a_burst_of_mixed_requests(scripted_server):
    """60 requests at once on loopback, good and bad mixed: every good one is answered and logged, every bad
    one refused with its status, and the server answers afterwards."""

    running = scripted_server(ScriptedEngine(CHARMS), max_request_bytes=8192)
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
    assert answers == ['ACTION: charm\nSAY: "Sit, mortal, and tell me of the road."'] * 15
    assert len(running.records()) == 15 and len({r.response_id for r in running.records()}) == 15
    assert httpx2.get(f"{running.url}/health").json()["models"] == ["vampire", "vampire@tier2"]
    text = running.metrics()
    assert metric(text, "srl_forge_requests_total", model="vampire", status="ok") == 15
    assert metric(text, "srl_forge_ttft_seconds_count", model="vampire") == 15
    assert metric(text, "srl_forge_served_models") == 2


def test_one_server_serves_one_precision(tmp_path):
    tiers = tmp_path / "tiers.yaml"
    tiers.write_text(
        "tiers:\n"
        "  tier1: {base_model: m, serves: species, ttft_budget_ms: 1000, precision: {embedded: int8}}\n"
        "  tier3: {base_model: m, serves: persona, ttft_budget_ms: 500}\n"
    )
    config = local_serving_config(tmp_path, tiers, tmp_path / "models")
    with pytest.raises(InputError, match=r"tiers.yaml: field 'tiers.\*.precision.embedded'.*\['float32', 'int8'\]"):
        ForgeServer(config, pool=ScriptedEngine())
    chosen = ForgeServer(config.model_copy(update={"precision": "int8"}), pool=ScriptedEngine())
    assert chosen.precision == "int8"  # an explicit precision settles it
