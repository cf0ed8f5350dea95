"""Deployment: the registry, the blue-green gates, rollback, lineage, tiers and the vLLM configuration."""

import multiprocessing
import time
from datetime import UTC, datetime

import duckdb
import pytest

from serving.performance import served_performance
from srl_assets import deploy as cli
from srl_assets.resources import REPO_ROOT
from srl_forge.databases import open_database
from srl_forge.deployment import TierSpec, deploy_candidate, load_tiers, vllm_config
from srl_forge.encounter import Encounter, GameState, Location, NPCState, Player
from srl_forge.errors import InputError
from srl_forge.grading import top_actions
from srl_forge.lore import load_species_lore
from srl_forge.player_logs import PlayerLogRecord, ServedInfo
from srl_forge.registry import AdapterMetrics, AdapterVersion, RegistryError, open_registry
from srl_forge.rulebook import load_rulebook
from srl_forge.rules_engine import RulesEngine
from srl_forge.stats import Interval

TIERS = {
    "tier1": TierSpec(base_model="small", serves="species", ttft_budget_ms=1000),
    "tier2": TierSpec(base_model="big", serves="species", ttft_budget_ms=800),
    "tier3": TierSpec(base_model="small", serves="persona", ttft_budget_ms=500),
}


def adapter(
    version,
    accuracy=(0.6, 0.5, 0.7),
    violations=0,
    target="vampire",
    kind="srl_rlvr",
    parent=None,
    base="small",
    lineage=None,
    constant=0.2,
):
    value, low, high = accuracy
    return AdapterVersion(
        version=version,
        target=target,
        kind=kind,
        base_model=base,
        adapter_uri=f"file:///store/{version}",
        parent_version=parent,
        lineage=lineage or {"lore_documents": ["vampire/weaknesses"], "rules_version": "r1"},
        metrics={
            "decision_accuracy": {"value": value, "low": low, "high": high},
            "best_constant_accuracy": constant,
            "random_acceptable_accuracy": 0.55,
            "guardrail_violations": violations,
        },
    )


def deploy(registry, a, ttft=200.0, serves="species"):
    registry.register(a)
    return {o.tier: o for o in deploy_candidate(registry, TIERS, registry.get(a.version), serves, ttft, "test")}


@pytest.fixture
def registry(database_location):
    """The same tests on the embedded registry and on a real PostgreSQL."""
    return open_registry(database_location)


def test_first_adapter_is_promoted_where_its_base_model_is_served(registry):
    outcome = deploy(registry, adapter("v1"))
    assert outcome["tier1"].result == "promoted" and registry.blue("vampire", "tier1") == "v1"
    # tier2 serves another base model: the adapter cannot go there, and the outcome says why
    assert outcome["tier2"].result == "skipped" and "big" in outcome["tier2"].reason
    assert registry.blue("vampire", "tier2") is None
    assert "tier3" not in outcome  # tier 3 serves personas, not species adapters


def test_a_first_adapter_below_the_constant_action_is_held_in_green(registry):
    """Nothing that has not learned is promoted, even with no blue to beat."""
    outcome = deploy(registry, adapter("v1", accuracy=(0.08, 0.00, 0.25), constant=0.50))["tier1"]
    assert outcome.result == "held" and registry.blue("vampire", "tier1") is None
    assert registry.green("vampire", "tier1") == "v1"
    assert [g.name for g in outcome.gates if not g.passed] == ["beats_references"]
    assert (
        "0.08 [0.00, 0.25] vs always answering the best constant action 0.50 (a random acceptable action: 0.55)"
        in outcome.reason
    )
    gate = next(g for g in outcome.gates if g.name == "beats_references")
    assert gate.numbers["best_constant"] == 0.50 and gate.numbers["candidate_low"] == 0.0


def test_an_adapter_above_the_constant_beyond_the_interval_is_promoted(registry):
    outcome = deploy(registry, adapter("v1", accuracy=(0.72, 0.60, 0.83), constant=0.27))["tier1"]
    assert outcome.result == "promoted" and registry.blue("vampire", "tier1") == "v1"
    assert next(g for g in outcome.gates if g.name == "beats_references").passed


def test_an_adapter_tied_with_the_constant_within_its_interval_is_held(registry):
    # above the constant on the point estimate, but its interval reaches down to it: not shown to have learned
    outcome = deploy(registry, adapter("v1", accuracy=(0.35, 0.22, 0.48), constant=0.27))["tier1"]
    assert outcome.result == "held" and "not above it beyond the interval" in outcome.reason
    # with a blue already serving, the same candidate is still held by this gate
    deploy(registry, adapter("v0", accuracy=(0.70, 0.58, 0.82), constant=0.27))
    again = deploy(registry, adapter("v2", accuracy=(0.35, 0.22, 0.48), constant=0.27))["tier1"]
    assert again.result == "held" and "beats_references" in [g.name for g in again.gates if not g.passed]
    assert registry.blue("vampire", "tier1") == "v0"


def test_an_evaluation_without_reference_numbers_is_held(registry):
    bare = adapter("v1")
    bare = bare.model_copy(update={"metrics": bare.metrics.model_copy(update={"best_constant_accuracy": None})})
    outcome = deploy(registry, bare)["tier1"]
    assert outcome.result == "held" and "no reference accuracy was recorded" in outcome.reason


def test_promotion_blocked_by_a_worse_evaluation(registry):
    deploy(registry, adapter("v1", accuracy=(0.80, 0.70, 0.90)))
    outcome = deploy(registry, adapter("v2", accuracy=(0.40, 0.28, 0.55)))["tier1"]
    assert outcome.result == "held"
    assert registry.blue("vampire", "tier1") == "v1" and registry.green("vampire", "tier1") == "v2"
    assert [g.name for g in outcome.gates if not g.passed] == ["not_worse_than_blue"]
    assert "0.40 [0.28, 0.55] vs blue 0.80" in outcome.reason
    # within the noise is not worse: a lower point estimate whose interval reaches blue passes
    assert deploy(registry, adapter("v3", accuracy=(0.74, 0.62, 0.85)))["tier1"].result == "promoted"


def test_an_adapter_evaluated_on_no_encounter_is_not_promoted(registry):
    empty = adapter("v0")
    empty = empty.model_copy(update={"metrics": empty.metrics.model_copy(update={"held_out_encounters": 0})})
    outcome = deploy(registry, empty)["tier1"]
    assert outcome.result == "held" and "evaluated on 0 held-out encounters" in outcome.reason
    assert registry.blue("vampire", "tier1") is None


def test_promotion_blocked_by_guardrail_violations(registry):
    deploy(registry, adapter("v1"))
    outcome = deploy(registry, adapter("v2", accuracy=(0.9, 0.8, 1.0), violations=1))["tier1"]
    assert outcome.result == "held" and "no_guardrail_violations" in outcome.reason
    assert registry.blue("vampire", "tier1") == "v1"


def test_promotion_blocked_by_latency_budget_of_the_tier(registry):
    species = adapter("s1")
    deploy(registry, species)
    persona = adapter("p1", target="vampire/count_orlok", kind="persona", parent="s1")
    outcome = deploy(registry, persona, ttft=900.0, serves="persona")["tier3"]
    assert outcome.result == "held"
    assert [g.name for g in outcome.gates if not g.passed] == ["latency_budget"]
    assert "900 ms vs the tier3 budget 500 ms" in outcome.reason
    assert registry.blue("vampire/count_orlok", "tier3") is None
    # the same latency is within tier 1's budget
    assert deploy(registry, adapter("s2", accuracy=(0.7, 0.6, 0.8)), ttft=900.0)["tier1"].result == "promoted"


def test_rollback_restores_the_previous_blue_and_keeps_every_record(registry):
    deploy(registry, adapter("v1"))
    deploy(registry, adapter("v2", accuracy=(0.7, 0.6, 0.8)))
    assert registry.blue("vampire", "tier1") == "v2"
    event = registry.rollback("vampire", "tier1", triggered_by="test", reason="players complain")
    assert registry.blue("vampire", "tier1") == "v1"
    assert (event.action, event.version, event.previous_blue, event.reason) == (
        "rollback",
        "v1",
        "v2",
        "players complain",
    )
    assert [e.action for e in registry.events("vampire", "tier1")] == [
        "candidate",
        "promote",
        "candidate",
        "promote",
        "rollback",
    ]
    assert {a.version for a in registry.versions("vampire")} == {"v1", "v2"}  # nothing deleted
    with pytest.raises(RegistryError, match="no earlier blue"):
        registry.rollback("vampire", "tier1", triggered_by="test")
    # redeploying the rolled-back version is an ordinary promotion again
    assert deploy(registry, adapter("v2", accuracy=(0.7, 0.6, 0.8)))["tier1"].result == "promoted"


def test_rollback_cli_restores_the_previous_blue(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SRL_FORGE_HOME", str(tmp_path))
    registry = open_registry(tmp_path / "registry.duckdb")
    assert cli.main(["rollback", "--species", "vampire"]) == 2
    assert "nothing is deployed for vampire on tier1" in capsys.readouterr().err
    deploy(registry, adapter("v1"))
    deploy(registry, adapter("v2", accuracy=(0.7, 0.6, 0.8)))
    assert cli.main(["rollback", "--species", "vampire", "--reason", "bad night"]) == 0
    assert "blue is v1 again (was v2)" in capsys.readouterr().out
    assert registry.blue("vampire", "tier1") == "v1"
    assert registry.events("vampire", "tier1")[-1].triggered_by.startswith("cli:")


def test_lineage_answers_which_lore_and_rules_made_a_monster(registry):
    deploy(
        registry,
        adapter(
            "s1",
            lineage={
                "lore_documents": ["vampire/weaknesses", "_world/calendar"],
                "rules_version": "rules-abc",
                "rules": ["no_entry_uninvited (vampire.yaml)"],
            },
        ),
    )
    deploy(
        registry,
        adapter(
            "p1",
            target="vampire/count_orlok",
            kind="persona",
            parent="s1",
            lineage={"persona_file": "lore/vampire/npcs/count_orlok.md"},
        ),
        serves="persona",
    )
    chain = registry.lineage(registry.blue("vampire/count_orlok", "tier3"))
    assert [a.version for a in chain] == ["p1", "s1"]
    assert chain[0].lineage["persona_file"].endswith("count_orlok.md")
    assert chain[1].lineage["lore_documents"] == ["vampire/weaknesses", "_world/calendar"]
    assert chain[1].lineage["rules_version"] == "rules-abc"


def test_registering_a_version_twice_keeps_the_first_record(registry):
    registry.register(adapter("v1"))
    registry.register(adapter("v1", accuracy=(0.1, 0.0, 0.2)))
    assert registry.get("v1").metrics.decision_accuracy.value == 0.6
    with pytest.raises(RegistryError, match="not registered"):
        registry.promote("vampire", "tier1", "nope", [], "test")


def test_vllm_configuration_matches_the_registry(registry):
    tiers = {
        **TIERS,
        "tier2": TierSpec(
            base_model="small",
            serves="species",
            ttft_budget_ms=800,
            precision={"embedded": "float32", "production": "fp8"},
        ),
    }
    for a, serves in (
        (adapter("s1"), "species"),
        (adapter("w1", target="werewolf"), "species"),
        (adapter("p1", target="vampire/count_orlok", kind="persona", parent="s1"), "persona"),
    ):
        registry.register(a)
        deploy_candidate(registry, tiers, a, serves, 100.0, "test")
    config = vllm_config(registry, tiers, lambda uri: uri.replace("file:///store", "/adapters"))
    assert len(config["servers"]) == 1  # one base model: one server for every tier
    server = config["servers"][0]
    expected = {
        f"{t if tier != 'tier2' else t + '@tier2'}": f"/adapters/{a.version}" for t, tier, a in registry.blue_slots()
    }
    assert server["lora_modules"] == expected
    assert set(expected) == {"vampire", "vampire@tier2", "werewolf", "werewolf@tier2", "vampire/count_orlok"}
    argv = server["argv"]
    assert argv[:3] == ["vllm", "serve", "small"] and "--enable-lora" in argv
    assert argv[argv.index("--max-loras") + 1] == "5" and argv[argv.index("--max-lora-rank") + 1] == "16"
    assert argv[argv.index("--quantization") + 1] == "fp8"
    assert argv[argv.index("--lora-modules") + 1 :] == [f"{k}={v}" for k, v in sorted(expected.items())]
    assert server["env"] == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    assert [r["json"] for r in server["load_requests"]] == [
        {"lora_name": k, "lora_path": v} for k, v in sorted(expected.items())
    ]
    # a rollback changes what vLLM should serve
    deploy_candidate(registry, tiers, registry.register(adapter("s2", accuracy=(0.7, 0.6, 0.8))), "species", 100.0, "t")
    assert vllm_config(registry, tiers, str)["servers"][0]["lora_modules"]["vampire"].endswith("s2")
    registry.rollback("vampire", "tier1", "test")
    assert vllm_config(registry, tiers, str)["servers"][0]["lora_modules"]["vampire"].endswith("s1")


def test_tiers_file_errors_name_the_field(tmp_path):
    shipped = load_tiers(REPO_ROOT / "config" / "tiers.yaml")
    assert set(shipped) == {"tier1", "tier2", "tier3"} and shipped["tier3"].ttft_budget_ms == 500
    bad = tmp_path / "tiers.yaml"
    bad.write_text("tiers:\n  tier3: {base_model: x, serves: persona, ttft_budget_ms: -5}\n")
    with pytest.raises(InputError, match=r"tiers.yaml: field 'tiers.tier3.ttft_budget_ms'"):
        load_tiers(bad)
    bad.write_text("tiers:\n  tier9: {base_model: x, serves: persona, ttft_budget_ms: 5}\n")
    with pytest.raises(InputError, match="field 'tiers.tier9': unknown tier"):
        load_tiers(bad)
    bad.write_text(
        "tiers:\n  tier1: {base_model: x, serves: species, ttft_budget_ms: 5, precision: {embedded: int4}}\n"
    )
    with pytest.raises(InputError, match=r"field 'tiers.tier1.precision': .*embedded precision 'int4': one of"):
        load_tiers(bad)
    bad.write_text("tiers:\n  tier1: {base_model: x, serves: species, ttft_budget_ms: 5, rules_enforcement: warn}\n")
    with pytest.raises(InputError, match=r"field 'tiers.tier1.rules_enforcement'"):
        load_tiers(bad)
    bad.write_text(
        "tiers:\n  tier1: {base_model: x, serves: species, ttft_budget_ms: 5, precision: {embedded: int8}}\n"
    )
    assert load_tiers(bad)["tier1"].precision == {"embedded": "int8", "production": "fp8"}


def test_served_performance_reverifies_answers_and_flags_a_drop():
    engine = RulesEngine(
        load_rulebook(REPO_ROOT / "rules", "vampire", load_species_lore(REPO_ROOT / "lore", "vampire").document_ids)
    )
    encounters = [
        Encounter(
            game=GameState(time_of_day=t),
            npc=NPCState(species="vampire"),
            player=Player(action=a),
            location=Location(kind="village", invited=i),
        )
        for t in ("dawn", "night")
        for a in ("talk", "attack", "invite")
        for i in (False, True)
    ]

    def record(encounter, right: bool, version="v1", ttft=120.0, replaced=()):
        top = top_actions(engine.decide(encounter))
        action = top[0] if right else next(a for a in engine.vocabulary if a not in top)
        return PlayerLogRecord(
            timestamp=datetime.now(UTC),
            species="vampire",
            player_id="p",
            encounter=encounter,
            npc_action=action,
            npc_line="...",
            served=ServedInfo(
                model="vampire", tier="tier1", adapter_version=version, ttft_ms=ttft, guardrail_categories=replaced
            ),
        )

    evaluated = {v: AdapterMetrics(decision_accuracy=Interval.exact(value)) for v, value in (("v1", 0.8), ("v2", 0.5))}
    records = (
        [record(e, right=i % 4 == 0) for i, e in enumerate(encounters * 2)]  # 25% right, evaluated 80%
        + [record(e, right=True, version="v2", replaced=("slur",) if i == 0 else ()) for i, e in enumerate(encounters)]
    )
    rows = {
        r["adapter_version"]: r
        for r in served_performance(records, lambda v: engine, lambda v: evaluated[v], margin=0.1, min_answers=20)
    }
    assert rows["v1"]["answers"] == 24 and rows["v1"]["decision_accuracy"]["value"] == 0.25
    assert rows["v1"]["stale"] is True  # 0.25 < 0.8 - 0.1
    assert rows["v2"]["decision_accuracy"]["value"] == 1.0 and rows["v2"]["stale"] is False
    assert rows["v2"]["guardrail_replaced"] == 1 and rows["v1"]["ttft_p50_ms"] == 120.0
    assert rows["v1"]["stale_reason"] == "accuracy"
    # one line in 12 replaced by the guardrails is over a 5% limit: stale for that, once enough answers count
    judged = served_performance(records, lambda v: engine, lambda v: evaluated[v], margin=0.1, min_answers=10)
    v2 = next(r for r in judged if r["adapter_version"] == "v2")
    assert v2["stale"] is True and v2["stale_reason"] == "guardrails"
    # too few answers to judge: never stale
    few = served_performance(records[:5], lambda v: engine, lambda v: evaluated[v], margin=0.1, min_answers=20)
    assert few[0]["stale"] is False


def _hold_duckdb_file(path, seconds, holding):
    con = duckdb.connect(path)
    holding.set()
    time.sleep(seconds)
    con.close()


def test_embedded_registry_waits_for_another_process_holding_the_file(tmp_path):
    """The server's watcher, a sensor and a run share the DuckDB file: a lock is waited out."""

    path = str(tmp_path / "registry.duckdb")
    registry = open_registry(path)
    context = multiprocessing.get_context("spawn")
    holding = context.Event()
    holder = context.Process(target=_hold_duckdb_file, args=(path, 1.5, holding))
    holder.start()
    assert holding.wait(120)
    with pytest.raises(duckdb.IOException, match="lock"):  # the file really is held by the other process
        duckdb.connect(path).close()
    started = time.perf_counter()
    registry.register(adapter("v1"))
    assert time.perf_counter() - started > 0.2  # it waited for the holder rather than failing
    holder.join()
    assert registry.get("v1") is not None


def test_lineage_metrics_and_gates_are_json_columns_queryable_in_sql(registry):
    deploy(registry, adapter("j1", lineage={"rules_version": "rules-xyz"}))
    with registry.database.transaction() as cur:
        cur.execute("SELECT lineage ->> 'rules_version' FROM adapter_versions WHERE version = 'j1'")
        assert cur.fetchone()[0] == "rules-xyz"
        cur.execute("SELECT metrics -> 'decision_accuracy' ->> 'low' FROM adapter_versions")
        assert float(cur.fetchone()[0]) == 0.5
        cur.execute("SELECT gates FROM deployment_events WHERE action = 'promote' ORDER BY event_id LIMIT 1")
        assert cur.fetchone() is not None
    promoted = next(e for e in registry.events("vampire") if e.action == "promote")
    assert {"beats_references", "no_guardrail_violations"} <= {g.name for g in promoted.gates}
    assert all(isinstance(g.passed, bool) and g.detail for g in promoted.gates)


def test_a_registry_with_the_old_text_columns_is_migrated_keeping_every_row(database_location):
    legacy = [
        """CREATE TABLE adapter_versions (
            version VARCHAR PRIMARY KEY, target VARCHAR NOT NULL, kind VARCHAR NOT NULL,
            base_model VARCHAR NOT NULL, adapter_uri VARCHAR NOT NULL, parent_version VARCHAR,
            lineage_json VARCHAR NOT NULL, metrics_json VARCHAR NOT NULL, registered_at VARCHAR NOT NULL)""",
        """CREATE TABLE deployment_events (
            event_id BIGINT PRIMARY KEY, happened_at VARCHAR NOT NULL, target VARCHAR NOT NULL, tier VARCHAR NOT NULL,
            action VARCHAR NOT NULL, version VARCHAR, previous_blue VARCHAR, reason VARCHAR NOT NULL,
            gates_json VARCHAR NOT NULL, triggered_by VARCHAR NOT NULL)""",
        """INSERT INTO adapter_versions VALUES ('old1', 'vampire', 'srl_rlvr', 'small', 'file:///store/old1', NULL,
            '{"rules_version": "r0"}', '{"decision_accuracy": {"value": 0.7, "low": 0.6, "high": 0.8}}',
            '2026-11-01T00:00:00+00:00')""",
        """INSERT INTO deployment_events VALUES (1, '2026-11-01T00:00:01+00:00', 'vampire', 'tier1', 'promote',
            'old1', NULL, 'all gates passed',
            '[{"name": "guardrails", "passed": true, "detail": "0 violations", "numbers": {"violations": 0}}]',
            'test')""",
    ]
    with open_database(database_location).transaction() as cur:
        for statement in legacy:
            cur.execute(statement)
    registry = open_registry(database_location)
    old = registry.get("old1")
    assert old.lineage == {"rules_version": "r0"} and old.metrics.decision_accuracy.low == 0.6
    (event,) = registry.events("vampire", "tier1")
    assert event.gates[0].name == "guardrails" and event.gates[0].numbers == {"violations": 0}
    assert registry.blue("vampire", "tier1") == "old1"
    registry.register(adapter("new1"))  # the migrated tables take new rows
    assert open_registry(database_location).get("new1").metrics.best_constant_accuracy == 0.2
