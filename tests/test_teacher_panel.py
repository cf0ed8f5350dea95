"""The teacher panel against three real OpenAI-compatible servers on 127.0.0.1 playing three providers: a good one,
a lazy one (always the same action, approves everything) that fails qualification, and a flaky one (429s and
stalls) that qualifies once its retries are ridden out; the loremaster, the designer and the director are on
endpoints too. One whole `expert_trajectories` materialization, then what a studio reads in the metadata."""

import pytest
import yaml
from dagster import AssetKey, materialize

from srl_assets.definitions import ASSETS
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.teachers.collaboration import TrajectoryBatch
from tests import scripted_teachers
from tests.fake_openai import FakeOpenAI
from tests.helpers import forge_with_teachers, table_rows

SMALL_ENCOUNTERS = {"ops": {"encounters": {"config": {"train_size": 40, "validation_size": 10, "test_size": 10}}}}
KEY_ENV = {"good": "GOOD_KEY", "lazy": "LAZY_KEY", "flaky": "FLAKY_KEY"}


def endpoint(server, provider: str, model: str) -> dict:
    return {
        "model": model,
        "base_url": server.base_url,
        "api_key_env": KEY_ENV[provider],
        "timeout_s": 0.5,
        "transport_retries": 6,
        "backoff_initial_s": 0.01,
        "usd_per_1k_prompt_tokens": {"good": 3.0, "lazy": 0.1, "flaky": 1.0}[provider],
    }


@pytest.fixture
def panel(project_copy, tmp_path, monkeypatch):
    servers = {
        "good": FakeOpenAI(scripted_teachers.good),
        "lazy": FakeOpenAI(scripted_teachers.lazy),
        "flaky": FakeOpenAI(scripted_teachers.good),
    }
    # the flaky provider: bursts of 429 and answers that stall past the timeout, between good answers
    servers["flaky"].faults = ([("status", 429, {"Retry-After": "0"})] * 2 + [("ok",)] * 3 + [("sleep", 0.8)]) * 6
    for name, server in servers.items():
        server.__enter__()
        monkeypatch.setenv(KEY_ENV[name], f"sk-{name}-provider-key-0000")
    good, lazy, flaky = servers["good"], servers["lazy"], servers["flaky"]
    config = {
        "providers": {"loremaster": "openai", "designer": "openai", "director": "openai"},
        "endpoints": {
            "loremaster": endpoint(flaky, "flaky", "flaky-lore"),
            "designer": endpoint(good, "good", "good-design"),
            "director": endpoint(good, "good", "good-direct"),
        },
        "writers": [
            {"name": "good-writer", "endpoint": endpoint(good, "good", "good-1")},
            {"name": "lazy-writer", "endpoint": endpoint(lazy, "lazy", "lazy-1")},
            {"name": "flaky-writer", "endpoint": endpoint(flaky, "flaky", "flaky-1")},
        ],
        "reviewers": [
            {"name": "good-reviewer", "endpoint": endpoint(good, "good", "good-2")},
            {"name": "lazy-reviewer", "endpoint": endpoint(lazy, "lazy", "lazy-2")},
            {"name": "flaky-reviewer", "endpoint": endpoint(flaky, "flaky", "flaky-2"), "aspects": ["rules"]},
        ],
        "proposals_per_writer": 1,
        "concurrency": 4,
    }
    teachers_file = tmp_path / "teachers.yaml"
    teachers_file.write_text(yaml.safe_dump(config))
    home = tmp_path / "home"
    instance, resources = forge_with_teachers(project_copy, home, teachers_file, outage_retries=0)
    yield servers, instance, resources, home, teachers_file
    for server in servers.values():
        server.__exit__(None, None, None)


def run(instance, resources, selection, **options):
    return materialize(
        ASSETS, partition_key="vampire", instance=instance, resources=resources, selection=selection, **options
    )


def upstream(instance, resources):
    """Lore to encounters on the small task (which fails its size check only)."""
    upstream_assets = ["lore", "rules", "player_interactions", "encounters"]
    run(instance, resources, upstream_assets, run_config=SMALL_ENCOUNTERS, raise_on_error=False)


def metadata(instance, asset: str) -> dict:
    return instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization.metadata


def test_a_lazy_provider_is_left_out_and_a_flaky_one_ridden_out_through_a_whole_materialization(panel):
    servers, instance, resources, home, _ = panel
    upstream(instance, resources)
    assert metadata(instance, "encounters")["teacher_proposals_kept"].value > 0  # the designer's endpoint
    result = run(instance, resources, ["expert_trajectories"], raise_on_error=False)
    assert result.success
    seen = metadata(instance, "expert_trajectories")

    # who qualified: the good and the flaky provider's members; the lazy one's writer and reviewer were left out
    qualification = seen["teacher_qualification"].value
    assert {n for n, s in qualification.items() if s["qualified"]} == {
        "good-writer",
        "flaky-writer",
        "good-reviewer",
        "flaky-reviewer",
    }
    assert qualification["lazy-writer"]["score"] <= 1 / 3  # no top action holds more than a third of the set
    assert qualification["lazy-reviewer"]["score"] == 0.5  # approving everything catches nothing
    logged = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any(m.startswith("teacher lazy-writer left out: its writer score 0.") for m in logged)

    # the lazy model's proposals and votes never reach the dataset
    store = LocalArtifactStore(home / "artifacts")
    batch = TrajectoryBatch.from_bytes(store.get_bytes(store.get_pointer("expert_trajectories", "vampire")["uri"]))
    assert batch.accepted and {a.trajectory.teacher for a in batch.accepted} <= {
        "good-writer+director",
        "flaky-writer+director",
    }
    assert {p.writer for p in batch.proposals} == {"good-writer", "flaky-writer"}
    assert all(set(p.votes) == {"good-reviewer", "flaky-reviewer"} for p in batch.proposals)
    lazy_systems = servers["lazy"].system_prompts()
    calibration = 6  # encounters: the lazy writer wrote only those, and never worked
    assert sum("trajectory writer" in s for s in lazy_systems) == calibration

    # the ledger: calls per model, the flaky provider's retries, costs by price; the panel table per model
    usage = {row[0]: row for row in table_rows(seen["teacher_usage"].value)[1:]}
    assert int(usage["flaky-writer"][3]) + int(usage["flaky-reviewer"][3]) + int(usage["loremaster"][3]) >= 12
    assert int(usage["lazy-writer"][1]) == calibration
    panel_rows = {row[0]: row for row in table_rows(seen["teacher_panel"].value)[1:]}
    assert panel_rows["good-writer"][4] == "1.00"  # every good proposal passes the verifier
    assert panel_rows["good-writer"][5] == str(len(batch.accepted))  # the director keeps the first clean proposal
    assert panel_rows["good-reviewer"][6] == "1.00" and panel_rows["flaky-reviewer"][7] == "1.00"
    assert panel_rows["lazy-writer"][1] == "writer (left out)"
    assert seen["cost_usd"].value > 0 and seen["dossier_entries_dropped"].value == {}

    # an unchanged re-run answers the calibration and the work from the cache: no provider is called again
    before = {name: len(server.requests) for name, server in servers.items()}
    assert run(instance, resources, ["expert_trajectories"]).success
    assert {name: len(server.requests) for name, server in servers.items()} == before


def test_a_role_with_no_qualified_model_fails_the_step_naming_every_score(panel):
    servers, instance, resources, home, teachers_file = panel
    config = yaml.safe_load(teachers_file.read_text())
    config["writers"] = [w for w in config["writers"] if w["name"] == "lazy-writer"]
    teachers_file.write_text(yaml.safe_dump(config))
    upstream(instance, resources)
    result = run(instance, resources, ["expert_trajectories"], raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.event_specific_data.error)
    assert "no writer meets the minimum level (0.70 decision agreement" in message
    assert "lazy-writer 0.17" in message or "lazy-writer 0.33" in message or "lazy-writer 0.00" in message
    assert not any("trajectory writer" in s for s in servers["good"].system_prompts())  # nothing else was written
