"""Retraining driven by change, end to end, on the embedded defaults with the `tiny` budget: five species
trained and deployed; a lore edit, then a rule edit; the sensors and the automation run until quiet, and
exactly the edited species' chain re-runs through deployment, warm-started from its parents, with the
registry's outcome recorded, a running server following the registry, and no other species touched."""

from collections import defaultdict

import pytest
import yaml
from dagster import AssetKey, AssetRecordsFilter, materialize

from asset_checks import CHECKS
from serving.server import ForgeServer, ServingConfig
from srl_assets.chains import PRODUCT_CHAIN
from srl_assets.definitions import ASSETS
from srl_assets.resources import DeploymentResource, TrainingResource
from srl_forge.registry import open_registry
from tests.growth_harness import Forge
from tests.helpers import SPECIES

CHAIN = PRODUCT_CHAIN  # the ablations and personas are not under test here
SMALL_ENCOUNTERS = {"ops": {"encounters": {"config": {"train_size": 40, "validation_size": 15, "test_size": 15}}}}


class TrainingForge(Forge):
    """The growth harness with real training (the `tiny` budget) and deployment to one tier."""

    def __init__(self, project, home, tiny_policy, model_cache):
        super().__init__(project, home)
        tiers = home / "tiers.yaml"
        home.mkdir(parents=True, exist_ok=True)
        tiers.write_text(f"tiers:\n  tier1: {{base_model: '{tiny_policy}', serves: species, ttft_budget_ms: 60000}}\n")
        self.tiers, self.tiny_policy, self.model_cache = tiers, tiny_policy, model_cache
        self.resources = dict(self.defs.resources)
        self.resources["training"] = TrainingResource(
            budget="tiny",
            model=tiny_policy,
            evaluation_encounters=4,
            evaluation_step_rows=2,
            work_root=str(home / "training"),
            model_cache=str(model_cache),
        )
        self.resources["deployment"] = DeploymentResource(
            registry=str(home / "registry.duckdb"), tiers_file=str(tiers), latency_prompts=1
        )
        self.registry = open_registry(home / "registry.duckdb")

    def run(self, species, selection):
        result = materialize(
            [*ASSETS, *CHECKS],
            partition_key=species,
            instance=self.instance,
            resources=self.resources,
            selection=selection,
            run_config=SMALL_ENCOUNTERS if "encounters" in selection else None,
        )
        assert result.success
        return result

    def until_quiet(self) -> dict[str, set[str]]:
        """Tick the sensors and evaluate automation, running what it requests, until it requests nothing;
        what ran, per species."""
        ran: dict[str, set[str]] = defaultdict(set)
        for _ in range(4):
            self.tick_sensors()
            requested = self.evaluate(CHAIN)
            if not requested:
                return dict(ran)
            by_species = defaultdict(list)
            for asset, partitions in requested.items():
                for species in partitions:
                    by_species[species].append(asset)
            for species, assets in sorted(by_species.items()):
                self.run(species, assets)
                ran[species].update(assets)
        raise AssertionError(f"automation still requesting after 4 rounds: {dict(ran)}")

    def record(self, asset, species):
        return self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[species]), limit=1
        ).records[0]

    def latest(self, asset, species):
        return self.record(asset, species).asset_materialization

    def storage_ids(self) -> dict[tuple[str, str], int]:
        return {(asset, species): self.record(asset, species).storage_id for species in SPECIES for asset in CHAIN}

    def manifest(self, asset, species) -> dict:
        return self.latest(asset, species).metadata["manifest"].value


@pytest.fixture
def trained(project_copy, tmp_path, tiny_policy, model_cache):
    """Five species trained and deployed once (each candidate held: a tiny adapter learns nothing), quiet."""
    forge = TrainingForge(project_copy, tmp_path / "home", tiny_policy, model_cache)
    forge.tick_sensors()  # registers the species and observes every source
    forge.evaluate(CHAIN)
    for species in SPECIES:
        forge.run(species, CHAIN)
    assert forge.until_quiet() == {}  # nothing changed: nothing runs
    return forge


def _held(forge, species, version):
    event = forge.registry.events(species, "tier1")[-1]
    assert event.version == version and event.action == "hold", event
    assert [g.name for g in event.gates if not g.passed] == ["beats_references"]


def test_a_lore_edit_then_a_rule_edit_retrain_and_redeploy_exactly_that_species(trained, tmp_path):
    forge = trained
    before = {s: (forge.manifest("srl_checkpoint", s), forge.manifest("rlvr_checkpoint", s)) for s in SPECIES}
    for species in SPECIES:
        _held(forge, species, before[species][1]["version"])

    # a person promotes ghoul's first adapter (a tiny one cannot pass the gates); a running server serves it
    first_ghoul = before["ghoul"][1]["version"]
    forge.registry.promote("ghoul", "tier1", first_ghoul, [], "test", "test set-up: a blue to serve")
    config = ServingConfig(
        registry=str(forge.home / "registry.duckdb"),
        artifacts_root=forge.resources["artifacts"].root,
        player_logs_root=str(tmp_path / "served_logs"),
        game_state_db=forge.resources["game_state_db"].location,
        lore_root=str(forge.project / "lore"),
        rules_root=str(forge.project / "rules"),
        voices_root=str(forge.project / "voices"),
        tiers_file=str(forge.tiers),
        model_cache=str(forge.model_cache),
        max_new_tokens=8,
        threads=1,
    )
    server = ForgeServer(config)
    assert server.monsters["ghoul"].adapter.version == first_ghoul

    # 1. a lore edit: ghoul's chain re-runs from lore to deployment, nothing else anywhere
    untouched = forge.storage_ids()
    path = forge.project / "lore" / "ghoul" / "dialogue.md"
    path.write_text(path.read_text() + "- Laughs at every funeral.\n")
    ran = forge.until_quiet()
    assert ran == {"ghoul": set(CHAIN) - {"player_interactions"}}
    srl, rlvr = forge.manifest("srl_checkpoint", "ghoul"), forge.manifest("rlvr_checkpoint", "ghoul")
    assert srl["parent_version"] == before["ghoul"][0]["version"] != srl["version"]  # warm-started from its parent
    assert rlvr["parent_version"] == srl["version"]  # SRL→RLVR from the new SRL adapter
    _held(forge, "ghoul", rlvr["version"])  # the registry records the outcome: held, with the failing gate
    assert forge.registry.green("ghoul", "tier1") == rlvr["version"]
    assert forge.registry.blue("ghoul", "tier1") == first_ghoul
    assert forge.latest("deployed_adapter", "ghoul").metadata["failing_gates"].value == ["beats_references"]
    now = forge.storage_ids()
    assert {k for k in now if now[k] != untouched[k]} == {(a, "ghoul") for a in ran["ghoul"]}

    # the server keeps serving the blue (a held candidate is not served), and picks up a promotion
    server.reload()
    assert server.monsters["ghoul"].adapter.version == first_ghoul
    forge.registry.promote("ghoul", "tier1", rlvr["version"], [], "test", "a designer's decision")
    assert server.reload() is not None and server.monsters["ghoul"].adapter.version == rlvr["version"]

    # 2. a species' rule edit: zombie's chain re-runs from rules (not its lore) to deployment, nothing else
    untouched = forge.storage_ids()
    zombie_srl = forge.manifest("srl_checkpoint", "zombie")["version"]
    path = forge.project / "rules" / "zombie.yaml"
    rules = yaml.safe_load(path.read_text())
    rules["rules"][0]["description"] += " Even a headless one keeps walking."  # a designer rewords a rule
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    ran = forge.until_quiet()
    assert ran == {"zombie": set(CHAIN) - {"lore", "player_interactions"}}
    srl = forge.manifest("srl_checkpoint", "zombie")
    assert srl["parent_version"] == zombie_srl
    assert forge.manifest("rlvr_checkpoint", "zombie")["parent_version"] == srl["version"]
    _held(forge, "zombie", forge.manifest("rlvr_checkpoint", "zombie")["version"])
    now = forge.storage_ids()
    assert {k for k in now if now[k] != untouched[k]} == {(a, "zombie") for a in ran["zombie"]}
    server.stop()
