"""Resources: where lore, rules, game state, memory and artifacts live. Configuration, not code."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from dagster import ConfigurableResource

from srl_forge.artifacts import LocalArtifactStore
from srl_forge.game_state import GameStateStore
from srl_forge.memory import DuckDBLoreStore, SemanticMemory, SentenceEmbedder

REPO_ROOT = Path(__file__).resolve().parent.parent


class ProjectFiles(ConfigurableResource):
    """The versioned inputs shipped with (or mounted beside) the code: lore and rules."""

    lore_root: str
    rules_root: str

    @property
    def lore_path(self) -> Path:
        return Path(self.lore_root)

    @property
    def rules_path(self) -> Path:
        return Path(self.rules_root)


class ArtifactStoreResource(ConfigurableResource):
    """Content-addressed bulk artifacts (datasets, adapters). Embedded default: a local folder."""

    root: str

    def store(self) -> LocalArtifactStore:
        return LocalArtifactStore(self.root)

    def load(self, uri: str, model):
        """A pydantic model stored as JSON at `uri`."""
        return model.model_validate(self.store().get_json(uri))


class GameStateResource(ConfigurableResource):
    """The live game state. Embedded default: DuckDB, seeded from a YAML file on first use."""

    duckdb_path: str
    seed_path: str

    def store(self) -> GameStateStore:
        store = GameStateStore(self.duckdb_path)
        store.load_seed(Path(self.seed_path))
        return store


@lru_cache(maxsize=2)
def _embedder(model_path: str | None) -> SentenceEmbedder:
    # Loading the model takes seconds: once per process and model.
    return SentenceEmbedder(model_path)


class SemanticMemoryResource(ConfigurableResource):
    """Lore embeddings with cosine search. Embedded default: DuckDB + all-MiniLM-L6-v2."""

    duckdb_path: str
    embedding_model: str | None = None  # a local sentence-transformers folder; None: the bundled MiniLM

    def memory(self) -> SemanticMemory:
        return SemanticMemory(DuckDBLoreStore(self.duckdb_path), _embedder(self.embedding_model))


class DeploymentResource(ConfigurableResource):
    """The adapter registry and the tiers. Embedded default: a DuckDB file; production: a
    `postgresql://` URL, best given as `EnvVar("SRL_FORGE_REGISTRY_URL")` (it holds a password)."""

    registry: str
    tiers_file: str
    triggered_by: str = "dagster"
    latency_prompts: int = 5  # held-out encounter prompts streamed to measure time to first token

    def open(self):
        from srl_forge.registry import open_registry

        return open_registry(self.registry)

    def tiers(self):
        from srl_forge.deployment import load_tiers

        return load_tiers(Path(self.tiers_file))


def forge_home() -> Path:
    return Path(os.environ.get("SRL_FORGE_HOME", REPO_ROOT / ".forge")).resolve()


def embedded_resources(home: Path | None = None, lore_root: Path | None = None, rules_root: Path | None = None,
                       game_state_seed: Path | None = None) -> dict:
    """The embedded defaults: everything under one home folder, no network, no GPU."""
    home = Path(home) if home else forge_home()
    return {
        "project_files": ProjectFiles(
            lore_root=str(lore_root or os.environ.get("SRL_FORGE_LORE_ROOT", REPO_ROOT / "lore")),
            rules_root=str(rules_root or os.environ.get("SRL_FORGE_RULES_ROOT", REPO_ROOT / "rules")),
        ),
        "artifacts": ArtifactStoreResource(root=str(home / "artifacts")),
        "game_state_db": GameStateResource(
            duckdb_path=str(home / "game_state.duckdb"),
            seed_path=str(game_state_seed or os.environ.get("SRL_FORGE_GAME_STATE_SEED",
                                                             REPO_ROOT / "game_state" / "seed.yaml")),
        ),
        "memory": SemanticMemoryResource(duckdb_path=str(home / "memory.duckdb")),
        "player_logs": PlayerLogsResource(root=str(home / "player_logs")),
        "deployment": DeploymentResource(
            registry=os.environ.get("SRL_FORGE_REGISTRY_URL") or str(home / "registry.duckdb"),
            tiers_file=os.environ.get("SRL_FORGE_TIERS_FILE", str(REPO_ROOT / "config" / "tiers.yaml")),
        ),
        "teachers": TeachersResource(
            config_file=os.environ.get("SRL_FORGE_TEACHERS_CONFIG"),
            voices_root=str(REPO_ROOT / "voices"),
            cache_dir=str(home / "teacher_cache"),
        ),
        "training": TrainingResource(
            budget=os.environ.get("SRL_FORGE_TRAINING_BUDGET", "quick"),
            model=os.environ.get("SRL_FORGE_POLICY_MODEL", "smollm2-135m-instruct"),
            config_overrides_json=os.environ.get("SRL_FORGE_SRL_OVERRIDES"),
            evaluation_encounters=_evaluation_encounters(os.environ.get("SRL_FORGE_EVALUATION_ENCOUNTERS")),
            rlvr_overrides_json=os.environ.get("SRL_FORGE_RLVR_OVERRIDES"),
            work_root=str(home / "training"),
            model_cache=str(home),
        ),
    }


def _evaluation_encounters(value: str | None) -> int | None:
    """SRL_FORGE_EVALUATION_ENCOUNTERS: a number, or 'all' (unset: the budget decides)."""
    if value is None or value == "":
        return None
    return 0 if value == "all" else int(value)


class PlayerLogsResource(ConfigurableResource):
    """Where player interaction logs land. Embedded default: a JSONL folder per species."""

    root: str
    stale_after_records: int = 50  # new records that make a species' encounters stale

    @property
    def path(self) -> Path:
        return Path(self.root)


class TeachersResource(ConfigurableResource):
    """Which teacher plays each role. No config file: the programmatic expert plays every role.

    The config file is YAML matching `srl_forge.teachers.team.TeachersConfig`; it names API-key
    environment variables, never keys.
    """

    config_file: str | None = None
    voices_root: str
    cache_dir: str

    def config(self):
        import yaml

        from srl_forge.errors import InputError
        from srl_forge.teachers.team import TeachersConfig

        if not self.config_file:
            return TeachersConfig()
        path = Path(self.config_file)
        try:
            return TeachersConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except FileNotFoundError as exc:
            raise InputError(path, "file", "teachers config file not found") from exc
        except ValueError as exc:
            raise InputError(path, "teachers", str(exc).splitlines()[0] if str(exc) else "invalid") from exc

    def voice(self, rulebook):
        """The species' voice file: the expert's intents and the species' stock phrases."""
        from srl_forge.teachers.lines import load_voice

        return load_voice(Path(self.voices_root), rulebook)

    def build(self, rulebook):
        from srl_forge.teachers.team import Teachers

        return Teachers(self.config(), Path(self.cache_dir), Path(self.voices_root), rulebook)


class TrainingResource(ConfigurableResource):
    """Policy training: the budget ('quick' for CPU demos and CI, 'full' for a GPU), the policy model
    and where work happens. The in-process launcher runs the same job entry point
    (`python -m training.srl --job ...`) that a SageMaker training job runs."""

    budget: str = "quick"
    model: str = "smollm2-135m-instruct"
    quantization: str = "none"
    config_overrides_json: str | None = None  # JSON object of SRLConfig fields
    rlvr_overrides_json: str | None = None  # JSON object of RLVRConfig fields
    evaluation_encounters: int | None = None  # held-out encounters scored; 0: all; None: 12 (seeded) on quick, all otherwise
    evaluation_step_rows: int = 8  # held-out expert steps scored for step similarity
    work_root: str
    model_cache: str

    @property
    def held_out_limit(self) -> int | None:
        """How many held-out encounters evaluation scores (None: all of them)."""
        if self.evaluation_encounters is not None:
            return self.evaluation_encounters or None
        return 12 if self.budget == "quick" else None

    @property
    def model_cache_path(self) -> Path:
        return Path(self.model_cache)

    def _config(self, cls, overrides_json: str | None):
        import json

        overrides = json.loads(overrides_json) if overrides_json else {}
        return cls.for_budget(self.budget, model=self.model, quantization=self.quantization, **overrides)

    def srl_config(self):
        from training.srl import SRLConfig

        return self._config(SRLConfig, self.config_overrides_json)

    def rlvr_config(self):
        from training.rlvr import RLVRConfig

        return self._config(RLVRConfig, self.rlvr_overrides_json)
