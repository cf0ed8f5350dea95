"""Every `SRL_FORGE_*` setting once: its type, default and meaning (pydantic-settings). The resources are
built from it (`resources.embedded_resources`); nothing else reads the environment for these. A wrong value
fails when the settings load, naming the variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from srl_forge.errors import InputError
from srl_forge.lore import LoreLimits
from srl_forge.tables import markdown_table
from training.grpo_runner import GRPOTrainingConfig
from training.model_loading import DEFAULT_POLICY, Quantization

REPO_ROOT = Path(__file__).resolve().parent.parent
Count = int | Literal["all"] | None


class ForgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SRL_FORGE_", extra="ignore", frozen=True)

    home: Path = Field(REPO_ROOT / ".forge", description="the embedded profile's folder: databases, artifacts, work")
    profile: Literal["embedded", "aws"] = Field(
        "embedded", description="embedded: everything under `home`; aws: PostgreSQL + S3 (DATABASE_URL, ARTIFACTS_URL)"
    )
    registry_url: str | None = Field(None, description="the adapter registry (embedded: a DuckDB file in `home`)")
    database_url: str | None = Field(None, description="aws: the PostgreSQL database (postgresql://...)")
    artifacts_url: str | None = Field(None, description="aws: where artifacts are stored (s3://bucket/prefix)")
    lore_root: Path = Field(REPO_ROOT / "lore", description="the lore corpus, a folder per species")
    rules_root: Path = Field(REPO_ROOT / "rules", description="rules as data")
    game_state_seed: Path = Field(REPO_ROOT / "game_state" / "seed.yaml", description="a fresh store's game state")
    voices_root: Path = Field(REPO_ROOT / "voices", description="the species' voices")
    tiers_file: Path = Field(REPO_ROOT / "config" / "tiers.yaml", description="the NPC tiers")
    max_lore_file_bytes: int = Field(1_000_000, gt=0, description="the largest lore document accepted")
    max_lore_section_chars: int = Field(20_000, gt=0, description="the longest section of a lore document")
    teachers_config: str | None = Field(None, description="teachers YAML; unset: the programmatic expert")
    serving_engine: Literal["auto", "llama.cpp", "llama.cpp-batched", "transformers"] = Field(
        "auto", description="what `make serve` uses (serving/engine.py)"
    )
    serve_api_key: SecretStr | None = Field(
        None, description="`make serve`: every route but /health needs `Authorization: Bearer <key>` (never logged)"
    )
    serve_green: bool = Field(
        False, description="`make serve`: also serve each slot's held candidate as `<model>:green` (the playground)"
    )
    serve_precision: Literal["float32", "int8"] | None = Field(
        None, description="`make serve`: the base model's weights, over the tiers' `precision.embedded`"
    )
    serve_max_request_bytes: int = Field(65_536, gt=0, description="`make serve`: the largest chat request body")
    serve_request_timeout_seconds: float = Field(
        30.0, gt=0, description="`make serve`: an answer still generating then ends with the rules engine's decision"
    )
    training_budget: Literal["tiny", "quick", "standard", "full"] = Field(
        "quick", description="training/recipes/<budget>.yaml"
    )
    policy_model: str = Field(DEFAULT_POLICY, description="a Hugging Face id or a local folder")
    training_quantization: Quantization | None = Field(
        None, description="every stage on a 4-bit (QLoRA) or 8-bit base (bitsandbytes, CPU or GPU); unset: the recipe's"
    )
    srl_overrides: dict[str, Any] | None = Field(
        None, description="a JSON object of SRL config fields over the recipe (training/grpo_runner.py names them)"
    )
    rlvr_overrides: dict[str, Any] | None = Field(
        None, description="a JSON object of RLVR config fields over the recipe (training/grpo_runner.py names them)"
    )
    evaluation_encounters: Count = Field(None, description="held-out encounters scored: a number or 'all'")
    stepwise_encounters: Count = Field(None, description="of those, rolled out step by step: a number or 'all'")
    training_launcher: Literal["auto", "in_process", "sagemaker"] = Field("auto", description="where training runs")
    sagemaker_role_arn: str | None = None
    sagemaker_image_uri: str | None = None
    sagemaker_s3_root: str | None = Field(None, description="default: the aws profile's artifacts URL")
    sagemaker_instance_type: str = "ml.g5.2xlarge"
    sagemaker_instance_count: int = Field(1, ge=1)
    sagemaker_processes_per_host: str = Field("1", description="a number, or 'auto': one per GPU (torchrun)")
    # read by the Dagster instance files (config/dagster/*.yaml), not by the code location: listed to be found
    dagster_database_url: str | None = Field(None, description="the run and event storage (postgresql+psycopg2://)")
    ecs_task_definition: str | None = Field(None, description="the ECS run launcher's task definition")

    @field_validator("evaluation_encounters", "stepwise_encounters", mode="before")
    @classmethod
    def _count(cls, value):
        return None if value == "" else value

    @field_validator("srl_overrides", "rlvr_overrides")
    @classmethod
    def _training_fields(cls, value):
        if value:  # an unknown field or a wrong type fails here, when the settings load, not in a run
            GRPOTrainingConfig(**value)
        return value

    @property
    def lore_limits(self) -> LoreLimits:
        return LoreLimits(max_file_bytes=self.max_lore_file_bytes, max_section_chars=self.max_lore_section_chars)


def encounter_count(value: Count) -> int | None:
    """A resource's encounter count: None (the budget decides), 0 (all) or a number."""
    return 0 if value == "all" else value


def load_settings(**overrides) -> ForgeSettings:
    """The settings from the environment (and `overrides`); InputError names the first wrong variable."""
    try:
        return ForgeSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "SRL_FORGE_" + str(err["loc"][0]).upper() if err["loc"] else "SRL_FORGE_*"
        raise InputError("environment", name, err["msg"]) from exc  # not the value: it may be a secret


def settings_table() -> str:
    """Every setting as a markdown table (docs/settings.md is written from it: `python -m srl_assets.settings`)."""
    rows = []
    for name, field in ForgeSettings.model_fields.items():
        default = field.default
        shown = f"`{default.relative_to(REPO_ROOT)}`" if isinstance(default, Path) else f"`{default}`"
        choices = [a for a in get_args(field.annotation) if get_origin(a) is Literal]  # Literal | None
        if get_origin(field.annotation) is Literal:
            kind = "one of " + ", ".join(f"`{v}`" for v in get_args(field.annotation))
        elif choices and len(get_args(field.annotation)) == 2 and type(None) in get_args(field.annotation):
            kind = "one of " + ", ".join(f"`{v}`" for v in get_args(choices[0])) + " or None"
        else:
            kind = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
        kind = (
            kind.replace(" | ", " or ").replace("Literal['all']", "`all`").replace("pydantic.types.SecretStr", "secret")
        )
        rows.append([f"`SRL_FORGE_{name.upper()}`", kind, shown, field.description or ""])
    return markdown_table(["variable", "type", "default", "what"], rows)


if __name__ == "__main__":
    print(settings_table())
