"""Shipped configuration files parse."""

from pathlib import Path

import yaml

from srl_forge.teachers.team import TeachersConfig
from tests.conftest import REPO


def test_openrouter_teachers_config_parses():
    config = TeachersConfig.model_validate(yaml.safe_load((REPO / "config" / "teachers.openrouter.yaml").read_text()))
    assert config.provider("writer") == "openai" and config.endpoints["writer"].api_key_env == "OPENROUTER_API_KEY"
    assert Path(REPO / "voices").is_dir()
