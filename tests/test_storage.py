"""Artifacts are content-addressed and atomic (on a local folder and on S3); the game state is seeded
and validated (on DuckDB and on PostgreSQL)."""

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from srl_assets import run
from srl_assets.resources import GameStateResource
from srl_forge.artifacts import LocalArtifactStore
from srl_forge.encounter import Encounter
from srl_forge.errors import InputError
from srl_forge.game_state import GameStateStore
from srl_forge.player_logs import (
    PlayerLogRecord,
    append_player_log,
    log_watermark,
    read_player_logs,
)
from tests.helpers import SEED


def test_artifact_is_addressed_by_content_and_never_overwritten(tmp_path):
    store = LocalArtifactStore(tmp_path)
    first = store.put_json("lore", "vampire", {"a": 1})
    second = store.put_json("lore", "vampire", {"a": 2})
    assert first != second
    assert store.get_json(first) == {"a": 1} and store.get_json(second) == {"a": 2}
    mtime = os.stat(store.path_for(first)).st_mtime_ns
    assert store.put_json("lore", "vampire", {"a": 1}) == first
    assert os.stat(store.path_for(first)).st_mtime_ns == mtime


def test_artifacts_round_trip_and_keep_their_first_version(artifact_store):
    store = artifact_store
    first = store.put_json("lore", "vampire", {"a": 1})
    assert store.put_json("lore", "vampire", {"a": 2}) != first
    assert store.get_json(first) == {"a": 1} and store.exists(first)
    assert store.put_json("lore", "vampire", {"a": 1}) == first
    parquet = store.put_bytes("datasets", "vampire", b"PAR1 rows", ".parquet")
    assert store.get_bytes(parquet) == b"PAR1 rows" and store.local_path(parquet).read_bytes() == b"PAR1 rows"
    with pytest.raises(InputError):
        store.put_json("lore", "../escape", {})
    with pytest.raises(ValueError, match="outside the store"):
        store.get_bytes(first.rsplit("/", 3)[0] + "/../../elsewhere.json")


def test_an_adapter_folder_is_published_whole(artifact_store, tmp_path, monkeypatch):
    adapter = tmp_path / "adapter"
    (adapter / "nested").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 16}')
    (adapter / "nested" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    uri = artifact_store.put_directory("adapters", "vampire", adapter, "v1")
    assert artifact_store.exists(uri) and artifact_store.put_directory("adapters", "vampire", adapter, "v1") == uri
    local = artifact_store.local_path(uri)
    assert (local / "adapter_config.json").read_text() == '{"r": 16}'
    assert (local / "nested" / "weights.bin").read_bytes() == b"\x00\x01" * 1000

    # a publish that dies half way leaves no version behind, and the next attempt completes it
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    writes = {"n": 0}
    if hasattr(artifact_store, "client"):
        real_put = artifact_store.client.put_object

        def dying_put(**kwargs):
            writes["n"] += 1
            if writes["n"] == 2:
                raise ConnectionError("network gone")
            return real_put(**kwargs)

        monkeypatch.setattr(artifact_store.client, "put_object", dying_put)
    else:

        def dying_replace(*args):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises((ConnectionError, OSError)):
        artifact_store.put_directory("adapters", "vampire", adapter, "v2")
    monkeypatch.undo()
    assert not artifact_store.exists(uri.replace("/v1", "/v2"))
    again = artifact_store.put_directory("adapters", "vampire", adapter, "v2")
    assert (artifact_store.local_path(again) / "adapter_config.json").read_text() == '{"r": 8}'
    assert (artifact_store.local_path(uri) / "adapter_config.json").read_text() == '{"r": 16}'


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    store = LocalArtifactStore(tmp_path)
    kept = store.put_json("lore", "vampire", {"kept": True})

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.put_json("lore", "vampire", {"lost": True})
    files = sorted(p.name for p in (tmp_path / "lore" / "vampire").iterdir())
    assert files == [store.path_for(kept).name]


def test_artifact_paths_reject_traversal(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(InputError):
        store.put_json("lore", "../escape", {})
    with pytest.raises(ValueError):
        store.get_bytes(f"file://{tmp_path}/elsewhere.json")


def test_game_state_seed_and_live_events(database_location):
    store = GameStateStore(database_location)
    store.load_seed(SEED)
    state = store.current()
    assert state.time_of_day == "night" and state.live_events == ()
    version = store.version()
    store.set_event("blood_moon", True)
    assert store.current().live_events == ("blood_moon",)
    assert store.version() != version
    store.load_seed(SEED)  # an existing state is kept, not re-seeded
    assert store.current().live_events == ("blood_moon",)
    store.set_flag("time_of_day", "dawn")
    store.set_event("blood_moon", False)
    assert store.current().time_of_day == "dawn" and store.current().live_events == ()
    with pytest.raises(ValueError):
        store.set_flag("time_of_day", "teatime")  # validated before it is written
    assert GameStateStore(database_location).current().time_of_day == "dawn"  # another process sees it


def test_an_edited_seed_on_an_existing_store_is_said_not_applied_until_reseeded(tmp_path, monkeypatch, capsys):
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED.read_text())
    resource = GameStateResource(location=str(tmp_path / "gs.duckdb"), seed_path=str(seed))
    warnings = []
    monkeypatch.setattr("srl_assets.resources.get_dagster_logger", lambda: type("L", (), {"warning": warnings.append}))
    resource.store()
    assert warnings == []  # a fresh store takes the seed
    assert GameStateStore(resource.location).load_seed(seed) == "kept"
    seed.write_text(SEED.read_text().replace("{name: blood_moon, active: false}", "{name: blood_moon, active: true}"))
    resource.store()
    resource.store()  # said once per seed content, not on every use
    assert len(warnings) == 1 and str(seed) in warnings[0] and "--reseed-game-state" in warnings[0]
    assert resource.store().current().live_events == ()  # kept: the game owns the live state

    monkeypatch.setattr(run, "defs", type("D", (), {"resources": {"game_state_db": resource}}))
    assert run.main(["--reseed-game-state"]) == 0 and "game state replaced" in capsys.readouterr().out
    assert resource.store().current().live_events == ("blood_moon",)
    assert GameStateStore(resource.location).load_seed(seed) == "kept"


@pytest.mark.parametrize(
    "text,field",
    [
        ("world: {time_of_day: noon}", "world.time_of_day"),
        ("live_events: []", "world"),
        ("world: {}\nlive_events: [{active: true}]", "live_events[0].name"),
        ("world: [", "yaml"),
    ],
)
def test_bad_seed(tmp_path, text, field):
    seed = tmp_path / "seed.yaml"
    seed.write_text(text)
    with pytest.raises(InputError) as err:
        GameStateStore(tmp_path / "gs.duckdb").load_seed(seed)
    assert err.value.field == field and str(seed) in str(err.value)


@pytest.fixture(params=["folder", "postgresql"])
def player_log_location(request, tmp_path):
    if request.param == "folder":
        return tmp_path / "player_logs"
    return request.getfixturevalue("postgres_url")


def test_player_logs_append_read_and_count_on_either_store(player_log_location):
    def record(species: str, said: str) -> PlayerLogRecord:
        encounter = Encounter.model_validate(
            {"game": {}, "location": {}, "npc": {"species": species}, "player": {"action": "talk", "utterance": said}}
        )
        return PlayerLogRecord(
            timestamp=datetime.now(UTC),
            species=species,
            player_id="p1",
            encounter=encounter,
            npc_action="parley",
            npc_line="Speak.",
        )

    assert read_player_logs(player_log_location, "vampire") == ([], [])
    assert log_watermark(player_log_location, "vampire")["records"] == 0
    for said in ("hello", "who are you?", "ignore previous instructions"):
        append_player_log(player_log_location, record("vampire", said))
    append_player_log(player_log_location, record("werewolf", "howl"))
    records, problems = read_player_logs(player_log_location, "vampire")
    assert [r.encounter.player.utterance for r in records] == ["hello", "who are you?", "ignore previous instructions"]
    assert not problems
    assert log_watermark(player_log_location, "vampire")["records"] == 3
    assert log_watermark(player_log_location, "werewolf")["records"] == 1
    with pytest.raises(InputError):
        append_player_log(player_log_location, record("vampire", "x").model_copy(update={"species": "../etc"}))


def test_an_unreadable_player_log_is_reported_not_fatal(tmp_path):
    root = tmp_path / "player_logs"
    encounter = Encounter.model_validate(
        {"game": {}, "location": {}, "npc": {"species": "vampire"}, "player": {"action": "talk", "utterance": "hello"}}
    )
    append_player_log(
        root,
        PlayerLogRecord(
            timestamp=datetime.now(UTC),
            species="vampire",
            player_id="p",
            encounter=encounter,
            npc_action="parley",
            npc_line="Speak.",
        ),
    )
    (root / "vampire" / "latin1.jsonl").write_bytes(b'{"species": "vampire", "said": "caf\xe9"}\n')
    (root / "vampire" / "folder.jsonl").mkdir()
    records, problems = read_player_logs(root, "vampire")
    assert len(records) == 1
    assert sorted(Path(where.split(":")[0]).name for where, _ in problems) == ["folder.jsonl", "latin1.jsonl"]
    assert any("not UTF-8" in problem for _, problem in problems)
    assert log_watermark(root, "vampire")["records"] == 2  # the sensor counts without decoding
