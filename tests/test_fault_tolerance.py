"""A teacher endpoint misbehaving during a whole `expert_trajectories` materialization (a real HTTP server
on 127.0.0.1): 429 bursts with Retry-After, stalls past the timeout, malformed JSON and dropped
connections are retried and the version equals an undisturbed run's; an outage that outlasts the
retries fails the step naming the role and the endpoint, keeps the previous version current and the
finished calls cached, and the next run makes only the missing calls."""

import pytest
import yaml
from dagster import AssetKey, materialize

from srl_assets.definitions import ASSETS
from srl_forge.artifacts import LocalArtifactStore
from tests import scripted_teachers
from tests.fake_openai import FakeOpenAI
from tests.helpers import forge_with_teachers

SECRET = "sk-fault-test-0123456789"
UPSTREAM = ["lore", "rules", "player_interactions", "encounters"]
SMALL_ENCOUNTERS = {"ops": {"encounters": {"config": {"train_size": 40, "validation_size": 10, "test_size": 10}}}}


@pytest.fixture
def forge(project_copy, tmp_path, monkeypatch):
    """The reviewer role on the scripted endpoint (the programmatic writer and director stay, so the
    trajectories are good ones); the upstream chain materialized once."""
    server = FakeOpenAI(scripted_teachers.good).__enter__()  # a reviewer that qualifies
    config = tmp_path / "teachers.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {"reviewer": "openai"},
                "endpoints": {
                    "reviewer": {
                        "model": "review-model",
                        "base_url": server.base_url,
                        "api_key_env": "FAULT_KEY",
                        "timeout_s": 0.5,
                        "transport_retries": 3,
                        "backoff_initial_s": 0.01,
                    }
                },
                "concurrency": 4,
            }
        )
    )
    monkeypatch.setenv("FAULT_KEY", SECRET)
    home = tmp_path / "home"
    instance, resources = forge_with_teachers(project_copy, home, config, outage_retries=1, outage_wait_s=0)
    materialize(
        ASSETS,
        partition_key="ghoul",
        instance=instance,
        resources=resources,
        selection=UPSTREAM,
        run_config=SMALL_ENCOUNTERS,
        raise_on_error=False,
    )  # the small task fails its size check only
    yield server, instance, resources, home
    server.__exit__(None, None, None)


def trajectories(instance, resources):
    return materialize(
        ASSETS,
        partition_key="ghoul",
        instance=instance,
        resources=resources,
        selection=["expert_trajectories"],
        raise_on_error=False,
    )


def latest(instance):
    return instance.get_latest_materialization_event(AssetKey("expert_trajectories")).asset_materialization


def test_a_misbehaving_endpoint_is_ridden_out_and_the_version_is_the_undisturbed_one(forge, tmp_path, capfd):
    server, instance, resources, home = forge
    server.faults = (
        [("ok",)] * 5
        + [("status", 429, {"Retry-After": "0"})] * 3
        + [("ok",)] * 20
        + [("sleep", 1.5), ("ok",), ("malformed", "Certainly! {not json"), ("ok",), ("drop",), ("status", 503)]
    )
    disturbed = trajectories(instance, resources)
    assert disturbed.success
    metadata = latest(instance).metadata
    assert metadata["llm_retries"].value >= 5 and metadata["accepted"].value > 0
    assert metadata["llm_reasks"].value >= 1  # the malformed answer was asked again
    # quiet: no retry reaches stderr (instructor logs each failed attempt as an ERROR: sent to DEBUG), and the
    # run says in one line per role how its calls went
    assert "API call failed" not in capfd.readouterr().err
    messages = [e.message for e in instance.all_logs(disturbed.run_id) if e.message]
    summaries = [m for m in messages if m.startswith("teacher ")]
    (summary,) = summaries  # the reviewer is the one role on an endpoint here
    assert summary.startswith("teacher reviewer: ") and " 0 transport retries" not in summary
    version = latest(instance).tags["dagster/data_version"]

    # the same inputs on a quiet endpoint from scratch give the same version: nothing was corrupted
    for cached in (home / "teacher_cache").glob("*.json"):
        cached.unlink()
    assert trajectories(instance, resources).success
    assert latest(instance).tags["dagster/data_version"] == version


def test_an_outage_outlasting_the_retries_fails_clearly_and_keeps_the_previous_version(forge):
    server, instance, resources, home = forge
    assert trajectories(instance, resources).success
    store = LocalArtifactStore(home / "artifacts")
    current = store.get_pointer("expert_trajectories", "ghoul")
    calls_first_run = len(server.requests)

    # new answers are needed (the cache is cleared); the endpoint answers the calibration's 72 reviews (3 aspects of
    # 6 good and 18 faulty trajectories) and some of the work, then fails for good
    for cached in (home / "teacher_cache").glob("*.json"):
        cached.unlink()
    server.requests.clear()
    server.faults = [("ok",)] * 100 + [("status", 500)] * 100_000
    failed = trajectories(instance, resources)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "'reviewer'" in message and server.base_url in message and "unfinished" in message
    assert SECRET not in message
    assert sum(e.is_step_up_for_retry for e in failed.all_events) == 1  # retried once, then failed
    assert store.get_pointer("expert_trajectories", "ghoul") == current  # the previous version stays current
    kept = len(list((home / "teacher_cache").glob("*.json")))
    assert kept == 100  # every finished call is kept; no failure was cached

    # the endpoint is back: the next run makes only the calls that were missing
    server.faults = []
    server.requests.clear()
    assert trajectories(instance, resources).success
    assert len(server.requests) == calls_first_run - kept


def test_the_api_key_never_reaches_logs_metadata_artifacts_or_caches(forge):
    server, instance, resources, home = forge
    server.faults = [("status", 429)] * 2  # retries are logged too
    result = trajectories(instance, resources)
    assert result.success
    assert all({k.lower(): v for k, v in h.items()}["authorization"] == f"Bearer {SECRET}" for h in server.headers)
    # everything Dagster keeps of the runs: event messages, metadata, errors, tags, config (what the UI shows)
    assert instance.get_runs()
    for run in instance.get_runs():
        assert SECRET not in repr(run) and SECRET not in repr(instance.all_logs(run.run_id))
    # every file written under the forge home: artifacts, pointers, the teacher cache, the databases
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
