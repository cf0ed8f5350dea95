"""The scale-out files are working files: the ECS instance configuration starts its run launcher against
a real ECS API (moto on 127.0.0.1) with PostgreSQL storage (pgserver); the image and the Helm values
name the code location, packages and settings that exist."""

import re
import shutil

import boto3
import yaml
from dagster import DagsterInstance
from dagster_aws.ecs import EcsRunLauncher
from dagster_postgres import PostgresRunStorage

from srl_assets.resources import REPO_ROOT


def test_the_ecs_instance_launches_runs_as_tasks_of_the_forge_image(
    monkeypatch, tmp_path, postgres_server, s3_endpoint
):

    postgres_server.psql("DROP DATABASE IF EXISTS dagster_ecs;")
    postgres_server.psql("CREATE DATABASE dagster_ecs;")
    url = postgres_server.get_uri("dagster_ecs").replace("postgresql://", "postgresql+psycopg2://", 1)
    ecs = boto3.client("ecs", endpoint_url=s3_endpoint)  # moto's server answers every AWS API
    arn = ecs.register_task_definition(
        family="srl-forge-run", containerDefinitions=[{"name": "run", "image": "srl-forge:0.1.0", "memory": 8192}]
    )["taskDefinition"]["taskDefinitionArn"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("SRL_FORGE_DAGSTER_DATABASE_URL", url)
    monkeypatch.setenv("SRL_FORGE_ECS_TASK_DEFINITION", "srl-forge-run")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "config" / "dagster" / "ecs.yaml", home / "dagster.yaml")

    instance = DagsterInstance.from_config(str(home))
    assert isinstance(instance.run_storage, PostgresRunStorage)
    launcher = instance.run_launcher
    assert isinstance(launcher, EcsRunLauncher)
    assert launcher.task_definition == arn and launcher.container_name == "run"
    assert "SRL_FORGE_ARTIFACTS_URL" in launcher.env_vars
    assert "SRL_FORGE_DATABASE_URL" not in launcher.env_vars  # a secret: from Secrets Manager, by tag
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_the_image_installs_every_package_and_serves_the_code_location():
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[(.*?)\]", pyproject).group(1)
    for package in re.findall(r'"(\w+)\*"', packages):
        assert f"COPY {package} {package}" in dockerfile
    for folder in ("lore", "rules", "game_state", "voices", "config"):
        assert f"COPY {folder} {folder}" in dockerfile
    assert '"-m", "srl_assets.definitions"' in dockerfile
    assert "'.[k8s]'" in dockerfile and "k8s = [" in pyproject


def test_the_helm_values_point_at_the_code_location_and_keep_secrets_in_a_secret():
    values = yaml.safe_load((REPO_ROOT / "deploy" / "kubernetes" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "srl_assets.definitions"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["SRL_FORGE_PROFILE"] == "aws" and env["SRL_FORGE_ARTIFACTS_URL"].startswith("s3://")
    assert not any("DATABASE_URL" in name for name in env)  # from the secret, not from the values
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == deployment["envSecrets"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
