"""Resources: where lore, rules, game state, memory and artifacts live. Configuration, not code.

`SRL_FORGE_PROFILE` switches every backend at once:

- `embedded` (default): DuckDB files and a local artifact folder under `SRL_FORGE_HOME`.
- `aws`: game state, semantic memory (pgvector) and the adapter registry in the PostgreSQL database
  of `SRL_FORGE_DATABASE_URL`; artifacts in S3 under `SRL_FORGE_ARTIFACTS_URL` (`s3://bucket/prefix`,
  boto3's usual credentials; `AWS_ENDPOINT_URL` for an S3-compatible store). The database URL holds a
  password, so resources take it as an `EnvVar`: Dagster resolves it in the run and never shows it.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

from dagster import ConfigurableResource, EnvVar, get_dagster_logger
from pydantic import field_validator

from srl_assets.failures import teacher_outages_retried
from srl_assets.settings import ForgeSettings, encounter_count, load_settings
from srl_forge.artifacts import StoredArtifact, decode_artifact, open_artifact_store
from srl_forge.databases import is_postgres, redact
from srl_forge.deployment import load_tiers
from srl_forge.errors import InputError
from srl_forge.game_state import GameStateStore
from srl_forge.lore import DEFAULT_LORE_LIMITS, LoreLimits, lore_source_version
from srl_forge.memory import SemanticMemory, SentenceEmbedder, open_lore_store
from srl_forge.registry import open_registry
from srl_forge.rulebook import rules_source_version
from srl_forge.teachers.lines import load_voice, voice_source_version
from srl_forge.teachers.team import Teachers, TeachersConfig
from srl_forge.yaml_files import MAX_SOURCE_FILE_BYTES, load_yaml
from training.model_loading import Quantization
from training.rlvr import RLVRConfig
from training.sagemaker_launcher import SageMakerLauncher, SageMakerSettings
from training.srl import SRLConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


class ProjectFiles(ConfigurableResource):
    """The versioned inputs shipped with (or mounted beside) the code: lore and rules."""

    lore_root: str
    rules_root: str
    max_lore_file_bytes: int = DEFAULT_LORE_LIMITS.max_file_bytes
    max_lore_section_chars: int = DEFAULT_LORE_LIMITS.max_section_chars

    @property
    def lore_limits(self) -> LoreLimits:
        return LoreLimits(max_file_bytes=self.max_lore_file_bytes, max_section_chars=self.max_lore_section_chars)

    @property
    def lore_path(self) -> Path:
        return Path(self.lore_root)

    @property
    def rules_path(self) -> Path:
        return Path(self.rules_root)

    def lore_version(self, species: str) -> str:
        return lore_source_version(self.lore_path, species, self.lore_limits)

    def rules_version(self, species: str) -> str:
        return rules_source_version(self.rules_path, species, MAX_SOURCE_FILE_BYTES)


class ArtifactStoreResource(ConfigurableResource):
    """Content-addressed bulk artifacts (datasets, adapters). Embedded default: a local folder;
    production: `s3://bucket/prefix`, with a local cache for files handed to libraries (peft)."""

    root: str
    cache_dir: str | None = None  # for s3: where downloaded artifacts are kept (content-addressed)
    endpoint_url: str | None = None  # an S3-compatible endpoint; None: AWS_ENDPOINT_URL or AWS

    def store(self):
        return open_artifact_store(self.root, self.cache_dir, self.endpoint_url)

    def load(self, uri: str, model: type[StoredArtifact]):
        """The artifact stored at `uri` (e.g. one named in an adapter's lineage), as `model`."""
        return decode_artifact(self.store().get_bytes(uri), model).stored_at(uri)


class GameStateResource(ConfigurableResource):
    """The live game state, seeded from a YAML file on first use. Embedded default: a DuckDB file;
    production: a `postgresql://` URL."""

    location: str
    seed_path: str

    def store(self) -> GameStateStore:
        store = GameStateStore(self.location)
        seed = Path(self.seed_path)
        if store.load_seed(seed) == "kept_seed_differs":
            _warn_seed_not_applied(seed, self.location)
        return store


_SEED_WARNED: set[tuple[str, str, int]] = set()


def _warn_seed_not_applied(seed: Path, location: str) -> None:
    """Once per process, store and seed edit: an edited seed on an existing store is not applied, said plainly."""
    key = (str(seed), location, seed.stat().st_mtime_ns)
    if key in _SEED_WARNED:
        return
    _SEED_WARNED.add(key)
    get_dagster_logger().warning(
        f"{seed} differs from the live game state in {redact(location)}: a seed only starts an empty store, so "
        "this edit is not applied (the game owns the live state). To apply it: "
        "python -m srl_assets.run --reseed-game-state (every species' rules then re-run)"
    )


@lru_cache(maxsize=2)
def _embedder(model_path: str | None) -> SentenceEmbedder:
    # Loading the model takes seconds: once per process and model.
    return SentenceEmbedder(model_path)


class SemanticMemoryResource(ConfigurableResource):
    """Lore embeddings with cosine search over all-MiniLM-L6-v2 vectors. Embedded default: a DuckDB
    file; production: a `postgresql://` URL (pgvector, HNSW index)."""

    location: str
    embedding_model: str | None = None  # a local sentence-transformers folder; None: the bundled MiniLM

    def memory(self) -> SemanticMemory:
        return SemanticMemory(open_lore_store(self.location), _embedder(self.embedding_model))


class DeploymentResource(ConfigurableResource):
    """The adapter registry and the tiers. Embedded default: a DuckDB file; production: a
    `postgresql://` URL, best given as `EnvVar("SRL_FORGE_REGISTRY_URL")` (it holds a password)."""

    registry: str
    tiers_file: str
    triggered_by: str = "dagster"
    latency_prompts: int = 5  # held-out encounter prompts streamed to measure time to first token
    serving_engine: str = "auto"  # the engine `make serve` uses, so the latency gate measures what serves

    def open(self):
        return open_registry(self.registry)

    def tiers(self):
        return load_tiers(Path(self.tiers_file))


def forge_home() -> Path:
    return load_settings().home.resolve()


def _required(settings: ForgeSettings, field: str, must_start: str) -> str:
    name, value = f"SRL_FORGE_{field.upper()}", getattr(settings, field)
    if not value:
        raise InputError(f"SRL_FORGE_PROFILE={settings.profile}", name, "must be set for this profile")
    if not value.startswith(must_start):
        raise InputError(f"SRL_FORGE_PROFILE={settings.profile}", name, f"must start with {must_start}")
    return value


def backend_locations(home: Path, profile: str | None = None, settings: ForgeSettings | None = None) -> dict:
    """Where the game state, memory, registry and artifacts live under a profile."""
    settings = settings or load_settings(profile=profile)
    if settings.profile == "embedded":
        return {
            "game_state": str(home / "game_state.duckdb"),
            "memory": str(home / "memory.duckdb"),
            "registry": settings.registry_url or str(home / "registry.duckdb"),
            "artifacts": str(home / "artifacts"),
            "player_logs": str(home / "player_logs"),
        }
    _required(settings, "database_url", "postgres")
    database = EnvVar("SRL_FORGE_DATABASE_URL")  # a secret: the resources hold the variable's name, not its value
    return {
        "game_state": database,
        "memory": database,
        "registry": database,
        "player_logs": database,
        "artifacts": _required(settings, "artifacts_url", "s3://"),
    }


def resolved(value: str) -> str:
    """A resource field's value outside a run (CLIs): an `EnvVar` read from the environment."""
    return value.get_value() if isinstance(value, EnvVar) else value


def embedded_resources(
    home: Path | None = None,
    lore_root: Path | None = None,
    rules_root: Path | None = None,
    game_state_seed: Path | None = None,
    profile: str | None = None,
    voices_root: Path | None = None,
) -> dict:
    """The resources of a profile (`SRL_FORGE_PROFILE`; default: the embedded one, everything under
    one home folder, no network, no GPU), built from the settings (`srl_assets.settings`); the arguments
    override them."""
    settings = load_settings(
        home=home,
        lore_root=lore_root,
        rules_root=rules_root,
        game_state_seed=game_state_seed,
        profile=profile,
        voices_root=voices_root,
    )
    home = settings.home.resolve() if home is None else Path(home)
    where = backend_locations(home, settings=settings)
    return {
        "project_files": ProjectFiles(
            lore_root=str(settings.lore_root),
            rules_root=str(settings.rules_root),
            max_lore_file_bytes=settings.max_lore_file_bytes,
            max_lore_section_chars=settings.max_lore_section_chars,
        ),
        "artifacts": ArtifactStoreResource(root=where["artifacts"], cache_dir=str(home / "artifact_cache")),
        "game_state_db": GameStateResource(location=where["game_state"], seed_path=str(settings.game_state_seed)),
        "memory": SemanticMemoryResource(location=where["memory"]),
        "player_logs": PlayerLogsResource(root=where["player_logs"]),
        "deployment": DeploymentResource(
            registry=where["registry"], tiers_file=str(settings.tiers_file), serving_engine=settings.serving_engine
        ),
        "teachers": TeachersResource(
            config_file=settings.teachers_config,
            voices_root=str(settings.voices_root),
            cache_dir=str(home / "teacher_cache"),
        ),
        "training": TrainingResource(
            budget=settings.training_budget,
            model=settings.policy_model,
            quantization=settings.training_quantization,
            srl_overrides=settings.srl_overrides,
            evaluation_encounters=encounter_count(settings.evaluation_encounters),
            stepwise_encounters=encounter_count(settings.stepwise_encounters),
            rlvr_overrides=settings.rlvr_overrides,
            work_root=str(home / "training"),
            model_cache=str(home),
            launcher=settings.training_launcher,
            sagemaker_role_arn=settings.sagemaker_role_arn,
            sagemaker_image_uri=settings.sagemaker_image_uri,
            sagemaker_s3_root=settings.sagemaker_s3_root
            or (where["artifacts"] if where["artifacts"].startswith("s3://") else None),
            sagemaker_instance_type=settings.sagemaker_instance_type,
            sagemaker_instance_count=settings.sagemaker_instance_count,
            sagemaker_processes_per_host=settings.sagemaker_processes_per_host,
        ),
    }


class PlayerLogsResource(ConfigurableResource):
    """Where player interaction logs land. Embedded default: a JSONL folder per species; production:
    the `player_logs` table of a `postgresql://` database."""

    root: str
    stale_after_records: int = 50  # new records that make a species' encounters stale
    max_utterance_chars: int = 2000  # longer player utterances are dropped (and counted) before training

    @property
    def location(self) -> Path | str:
        return self.root if is_postgres(self.root) else Path(self.root)


class TeachersResource(ConfigurableResource):
    """Which teacher plays each role. No config file: the programmatic expert plays every role.

    The config file is YAML matching `srl_forge.teachers.team.TeachersConfig`; it names API-key
    environment variables, never keys.
    """

    config_file: str | None = None
    voices_root: str
    cache_dir: str
    outage_retries: int = 2  # a step whose teacher endpoint stays unavailable is retried this often ...
    outage_wait_s: float = 120.0  # ... after this wait; finished calls come from the cache

    def config(self):
        import yaml

        if not self.config_file:
            return TeachersConfig()
        path = Path(self.config_file)
        try:
            return TeachersConfig.model_validate(load_yaml(path.read_text(encoding="utf-8")) or {})
        except FileNotFoundError as exc:
            raise InputError(path, "file", "teachers config file not found") from exc
        except yaml.YAMLError as exc:
            raise InputError(path, "yaml", f"not valid YAML: {exc}") from exc
        except ValueError as exc:
            raise InputError(path, "teachers", str(exc).splitlines()[0] if str(exc) else "invalid") from exc

    @contextmanager
    def outages_retried(self, context, built=None):
        """Around teacher calls in an asset: an endpoint outage retries the step, then fails it clearly. With
        the `built` teachers, one line per role says how the calls went (retries are logged at DEBUG only)."""

        try:
            with teacher_outages_retried(self.outage_retries, self.outage_wait_s, context.retry_number):
                yield
        finally:
            for line in built.ledger.summary() if built is not None else []:
                context.log.info(line)

    def voice_version(self, species: str) -> str:
        return voice_source_version(Path(self.voices_root), species, MAX_SOURCE_FILE_BYTES)

    def voice(self, rulebook):
        """The species' voice file: the expert's intents and the species' stock phrases."""

        return load_voice(Path(self.voices_root), rulebook)

    def build(self, rulebook):
        return Teachers(self.config(), Path(self.cache_dir), Path(self.voices_root), rulebook)


class TrainingResource(ConfigurableResource):
    """Policy training: the budget ('quick' for CPU demos and CI, 'full' for a GPU), the policy model
    and where work happens. The in-process launcher runs the same job entry point
    (`python -m training.srl --job ...`) that a SageMaker training job runs."""

    budget: str = "quick"
    model: str = "smollm2-135m-instruct"
    # "4bit" (QLoRA) or "8bit": every stage on a quantized base, over the recipe's `quantization`; None: the recipe's.
    # A str for Dagster's config (it has no Literal); checked against `Quantization` when set.
    quantization: str | None = None
    srl_overrides: dict[str, Any] | None = None  # SRLConfig fields over the recipe's `srl` section
    rlvr_overrides: dict[str, Any] | None = None  # RLVRConfig fields over the recipe's other sections
    evaluation_encounters: int | None = None  # held-out encounters scored; 0 or None: all of them
    # of those, rolled out step by step (SRL); None: 2 on tiny, 12 on quick, 30 on standard, all on full
    stepwise_encounters: int | None = None
    evaluation_step_rows: int = 8  # held-out expert steps scored for step similarity
    work_root: str
    model_cache: str
    # Where training runs: "in_process", "sagemaker", or "auto" (quick: in process; other budgets:
    # SageMaker when a role and an image are configured, else in process).
    launcher: str = "auto"
    sagemaker_role_arn: str | None = None
    sagemaker_image_uri: str | None = None
    sagemaker_s3_root: str | None = None  # s3://bucket/prefix for job inputs, outputs and checkpoints
    sagemaker_instance_type: str = "ml.g5.2xlarge"
    sagemaker_instance_count: int = 1
    sagemaker_processes_per_host: str = "1"  # "auto": one per GPU (torchrun); multi-GPU instance types
    sagemaker_use_spot: bool = True
    sagemaker_poll_seconds: float = 30.0
    sagemaker_endpoint_url: str | None = None

    @field_validator("quantization")
    @classmethod
    def _known_quantization(cls, value: str | None) -> str | None:
        if value is not None and value not in get_args(Quantization):
            raise InputError("training resource", "quantization", f"{value!r} is not one of {get_args(Quantization)}")
        return value

    def sagemaker_launcher(self):
        """The SageMaker launcher when this budget trains there, else None (in process)."""
        if self.launcher not in ("auto", "in_process", "sagemaker"):
            raise InputError("training resource", "launcher", f"{self.launcher!r} is not auto, in_process or sagemaker")
        configured = bool(self.sagemaker_role_arn and self.sagemaker_image_uri and self.sagemaker_s3_root)
        if self.launcher == "in_process" or (
            self.launcher == "auto" and (self.budget in ("tiny", "quick") or not configured)
        ):
            return None
        if not configured:
            raise InputError(
                "training resource",
                "sagemaker_role_arn",
                "launcher sagemaker needs sagemaker_role_arn, sagemaker_image_uri and sagemaker_s3_root",
            )

        return SageMakerLauncher(
            SageMakerSettings(
                role_arn=self.sagemaker_role_arn,
                image_uri=self.sagemaker_image_uri,
                s3_root=self.sagemaker_s3_root,
                instance_type=self.sagemaker_instance_type,
                instance_count=self.sagemaker_instance_count,
                processes_per_host=self.sagemaker_processes_per_host,
                use_spot=self.sagemaker_use_spot,
                poll_seconds=self.sagemaker_poll_seconds,
                endpoint_url=self.sagemaker_endpoint_url,
            )
        )

    @property
    def held_out_limit(self) -> int | None:
        """How many held-out encounters evaluation scores (None: all of them)."""
        return self.evaluation_encounters or None

    @property
    def stepwise_limit(self) -> int | None:
        """How many of them the SRL adapter is rolled out on step by step (a generation round per step)."""
        if self.stepwise_encounters is not None:
            return self.stepwise_encounters or None
        return {"tiny": 2, "quick": 12, "standard": 30}.get(self.budget)

    @property
    def model_cache_path(self) -> Path:
        return Path(self.model_cache)

    def config(self, stage: str):
        """The training config of a stage (srl, rlvr, rlvr_only, sft_only, persona) under this budget's recipe
        (`training/recipes/<budget>.yaml`); the overrides (SRL's for `srl`, RLVR's for the others) win."""
        cls, overrides = (SRLConfig, self.srl_overrides) if stage == "srl" else (RLVRConfig, self.rlvr_overrides)
        overrides = dict(overrides or {})
        if stage == "sft_only":  # what makes the ablation: no reinforcement, whatever the RLVR overrides say
            overrides["max_steps"] = 0
        chosen = {"model": self.model} | ({"quantization": self.quantization} if self.quantization else {})
        return cls.for_budget(self.budget, stage, **(chosen | overrides))

    def srl_config(self):
        return self.config("srl")

    def rlvr_config(self):
        return self.config("rlvr")
