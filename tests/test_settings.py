"""One settings model (`srl_assets.settings`): every SRL_FORGE_* variable typed, documented and turned into
the resources; a wrong value fails at load naming the variable, never echoing it."""

import pytest

from srl_assets.resources import embedded_resources
from srl_assets.settings import ForgeSettings, load_settings
from srl_forge.errors import InputError


def test_the_environment_reaches_the_resources(monkeypatch, tmp_path):
    monkeypatch.setenv("SRL_FORGE_MAX_LORE_FILE_BYTES", "20000")
    monkeypatch.setenv("SRL_FORGE_TRAINING_BUDGET", "standard")
    monkeypatch.setenv("SRL_FORGE_EVALUATION_ENCOUNTERS", "all")
    monkeypatch.setenv("SRL_FORGE_STEPWISE_ENCOUNTERS", "12")
    monkeypatch.setenv("SRL_FORGE_RLVR_OVERRIDES", '{"max_steps": 3}')
    resources = embedded_resources(tmp_path)
    assert resources["project_files"].lore_limits.max_file_bytes == 20000
    training = resources["training"]
    assert training.budget == "standard" and training.evaluation_encounters == 0 and training.stepwise_encounters == 12
    assert training.rlvr_overrides == {"max_steps": 3} and training.srl_overrides is None
    assert training.config("rlvr").max_steps == 3 and training.config("sft_only").max_steps == 0


@pytest.mark.parametrize(
    "name, value",
    [
        ("SRL_FORGE_MAX_LORE_FILE_BYTES", "lots"),
        ("SRL_FORGE_TRAINING_BUDGET", "huge"),
        ("SRL_FORGE_EVALUATION_ENCOUNTERS", "some"),
        ("SRL_FORGE_RLVR_OVERRIDES", "max_steps=3"),
        ("SRL_FORGE_RLVR_OVERRIDES", '{"max_stepz": 3}'),
        ("SRL_FORGE_SRL_OVERRIDES", '{"sft_epochs": -1}'),
        ("SRL_FORGE_SERVING_ENGINE", "vllm"),
    ],
)
def test_a_wrong_value_fails_at_load_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=name) as err:
        load_settings()
    assert value not in str(err.value)  # values may be secrets: never echoed


def test_every_setting_says_what_it_is_for():
    undocumented = [
        name
        for name, field in ForgeSettings.model_fields.items()
        if not field.description and not name.startswith("sagemaker_")
    ]
    assert not undocumented
