"""SRL_FORGE_PROFILE=aws: every backend switched at once, against real local servers started here:
PostgreSQL 16 + pgvector (pgserver) for the Dagster instance, the game state, the semantic memory and
the registry; S3 (moto's server on 127.0.0.1) for artifacts and Dagster's step outputs."""

import shutil

import pytest
from dagster import AssetKey, DagsterInstance, EnvVar, materialize
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from srl_assets.definitions import ASSETS, build_definitions
from srl_assets.partitions import register_species
from srl_assets.resources import REPO_ROOT, embedded_resources
from srl_forge.artifacts import S3ArtifactStore
from srl_forge.errors import InputError
from srl_forge.game_state import GameStateStore
from srl_forge.memory import open_lore_store
from srl_forge.registry import open_registry


def _database(postgres_server, name: str) -> str:
    postgres_server.psql(f"DROP DATABASE IF EXISTS {name};")
    postgres_server.psql(f"CREATE DATABASE {name};")
    return postgres_server.get_uri(name)


@pytest.fixture
def aws_profile(monkeypatch, tmp_path, postgres_server, s3_endpoint, s3_root):
    forge_url = _database(postgres_server, "forge_aws")
    dagster_url = _database(postgres_server, "dagster_aws")
    monkeypatch.setenv("SRL_FORGE_PROFILE", "aws")
    monkeypatch.setenv("SRL_FORGE_DATABASE_URL", forge_url)
    monkeypatch.setenv("SRL_FORGE_ARTIFACTS_URL", s3_root)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    # dagster-postgres speaks SQLAlchemy: the driver is named in the URL
    monkeypatch.setenv(
        "SRL_FORGE_DAGSTER_DATABASE_URL", dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    )
    monkeypatch.delenv("SRL_FORGE_REGISTRY_URL", raising=False)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "config" / "dagster" / "postgres.yaml", dagster_home / "dagster.yaml")
    return {"forge_url": forge_url, "dagster_home": dagster_home, "s3_root": s3_root, "s3_endpoint": s3_endpoint}


def test_the_aws_profile_materializes_a_species_on_postgres_and_s3(aws_profile, project_copy, tmp_path):
    instance = DagsterInstance.from_config(str(aws_profile["dagster_home"]))
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    defs = build_definitions(
        home=tmp_path / "home",
        lore_root=project_copy / "lore",
        rules_root=project_copy / "rules",
        game_state_seed=project_copy / "game_state" / "seed.yaml",
    )
    # the database URL holds a password: the resources carry the variable's name, not its value
    assert isinstance(defs.resources["game_state_db"].location, EnvVar)
    assert isinstance(defs.resources["deployment"].registry, EnvVar)
    assert isinstance(defs.resources["player_logs"].root, EnvVar)  # player logs: a table in the same database
    register_species(instance, project_copy / "lore")

    result = materialize(
        ASSETS, partition_key="werewolf", instance=instance, resources=defs.resources, selection=["lore", "rules"]
    )
    assert result.success

    # step outputs are typed artifacts in S3: content-addressed objects, then the version pointer
    rules_event = instance.get_latest_materialization_event(AssetKey("rules")).asset_materialization
    rules_uri = rules_event.metadata["artifact_uri"].value
    assert rules_uri.startswith(aws_profile["s3_root"] + "/rules/werewolf/")
    store = S3ArtifactStore(aws_profile["s3_root"], tmp_path / "cache", aws_profile["s3_endpoint"])
    assert store.get_json(rules_uri)["rulebook"]["species"] == "werewolf"
    assert store.get_pointer("rules", "werewolf")["uri"] == rules_uri
    assert result.output_for_node("rules").rulebook.species == "werewolf"
    lore = result.output_for_node("lore")
    assert open_lore_store(aws_profile["forge_url"]).has_version("werewolf", lore.version)
    assert GameStateStore(aws_profile["forge_url"]).current().time_of_day == "night"
    open_registry(aws_profile["forge_url"]).log_position()  # the registry's tables are there too

    # the run history lives in PostgreSQL: another process with the same dagster.yaml sees it
    again = DagsterInstance.from_config(str(aws_profile["dagster_home"]))
    event = again.get_latest_materialization_event(AssetKey("rules"))
    assert event.asset_materialization.partition == "werewolf"
    assert "werewolf" in again.get_dynamic_partitions("species")


def test_a_profile_without_its_settings_says_which_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("SRL_FORGE_PROFILE", "aws")
    monkeypatch.delenv("SRL_FORGE_DATABASE_URL", raising=False)
    with pytest.raises(InputError, match="SRL_FORGE_DATABASE_URL"):
        embedded_resources(tmp_path)
    monkeypatch.setenv("SRL_FORGE_DATABASE_URL", "postgresql://u:secret@db/forge")
    monkeypatch.setenv("SRL_FORGE_ARTIFACTS_URL", "/not/a/bucket")
    with pytest.raises(InputError, match="SRL_FORGE_ARTIFACTS_URL.*s3://"):
        embedded_resources(tmp_path)
    monkeypatch.setenv("SRL_FORGE_PROFILE", "gcp")
    with pytest.raises(InputError, match="SRL_FORGE_PROFILE.*'embedded' or 'aws'"):
        embedded_resources(tmp_path)
