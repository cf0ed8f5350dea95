"""Blue-green deployment: the tiers, the promotion gates, and the vLLM multi-LoRA configuration.

A candidate adapter lands in *green*; it replaces *blue* only when every blocking gate passes:

- `not_worse_than_blue`: the candidate's decision accuracy is not worse than blue's beyond the noise of
  the held-out set — blocked when the candidate's upper 95% bound is below blue's measured value
  (both come from the evaluation's bootstrap intervals). With no blue yet, the gate passes.
- `beats_references`: nothing that has not learned is promoted — the candidate's lower 95% bound of decision
  accuracy must exceed the best constant action's accuracy on the same held-out encounters, blue or no blue
  (the random acceptable action's figure is shown beside it).
- `no_guardrail_violations`: zero violating answers on the held-out set.
- `latency_budget`: time to first streamed token, p50 over encounter prompts with one stream, within
  the tier's budget (`config/tiers.yaml`).

Pure functions: the Dagster asset measures and calls them; the tests call them directly.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from srl_forge.errors import InputError, raise_all, validation_errors
from srl_forge.registry import TIERS, AdapterRegistry, Gate
from srl_forge.stats import Interval
from srl_forge.yaml_files import load_yaml

EMBEDDED_PRECISIONS = ("float32", "int8")  # what the local engines serve (serving.engine)


class TierSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    description: str = ""
    base_model: str
    serves: Literal["species", "persona"]
    ttft_budget_ms: float = Field(gt=0)
    # embedded: the local engine's weights (float32, or int8: llama.cpp Q8_0 / bitsandbytes); production: vLLM's
    precision: dict[Literal["embedded", "production"], str] = Field(
        default_factory=lambda: {"embedded": "float32", "production": "fp8"}
    )
    # an answer whose action the rules engine forbids here (or that ignores a requirement): `replace` says the
    # engine's decision with an expert line instead, `log` lets it through; both are counted and logged
    rules_enforcement: Literal["replace", "log"] = "replace"

    @field_validator("precision")
    @classmethod
    def _embedded_precision(cls, value: dict) -> dict:
        if value.get("embedded", "float32") not in EMBEDDED_PRECISIONS:
            raise ValueError(f"embedded precision {value['embedded']!r}: one of {', '.join(EMBEDDED_PRECISIONS)}")
        return {"embedded": "float32", "production": "fp8"} | value

    @property
    def embedded_precision(self) -> str:
        return self.precision["embedded"]


def load_tiers(path: Path) -> dict[str, TierSpec]:
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise InputError(path, "file", "tiers config not found") from exc
    except yaml.YAMLError as exc:
        raise InputError(path, "yaml", str(exc).splitlines()[0]) from exc
    tiers = raw.get("tiers") if isinstance(raw, dict) else None
    if not isinstance(tiers, dict):
        raise InputError(path, "tiers", "a mapping of tier1/tier2/tier3 is required")
    out, problems = {}, []  # every problem of every tier, reported together
    for name, spec in tiers.items():
        if name not in TIERS:
            problems.append(InputError(path, f"tiers.{name}", f"unknown tier; expected one of {', '.join(TIERS)}"))
            continue
        try:
            out[name] = TierSpec.model_validate(spec)
        except ValidationError as exc:
            problems += validation_errors(
                path, exc, lambda loc, name=name: f"tiers.{name}" + "".join(f".{p}" for p in loc)
            )
    raise_all(problems)
    return out


def accuracy_gate(candidate: Interval, blue: Interval | None, held_out: int | None = None) -> Gate:
    """`candidate`/`blue`: decision accuracy on the held-out set of `held_out` encounters (None: not
    recorded). An evaluation on no encounter shows nothing: blocked."""
    if held_out == 0:
        return Gate(
            name="not_worse_than_blue",
            passed=False,
            detail="the candidate was evaluated on 0 held-out encounters: nothing shows it works",
            numbers={"held_out_encounters": 0},
        )
    if blue is None:
        return Gate(
            name="not_worse_than_blue",
            passed=True,
            detail="no blue adapter yet",
            numbers={"candidate": candidate.value, "candidate_high": candidate.high},
        )
    passed = candidate.high >= blue.value
    detail = (
        f"candidate decision accuracy {candidate.value:.2f} [{candidate.low:.2f}, {candidate.high:.2f}] "
        f"vs blue {blue.value:.2f}: "
        + ("within the noise or better" if passed else "worse beyond the held-out interval")
    )
    return Gate(
        name="not_worse_than_blue",
        passed=passed,
        detail=detail,
        numbers={
            "candidate": candidate.value,
            "candidate_low": candidate.low,
            "candidate_high": candidate.high,
            "blue": blue.value,
        },
    )


def references_gate(candidate: Interval, best_constant: float | None, random_acceptable: float | None = None) -> Gate:
    """`candidate`: decision accuracy; `best_constant`: the best constant action's accuracy
    on the same held-out encounters (None: not recorded, so nothing shows the candidate learned: blocked)."""
    shown = f" (a random acceptable action: {random_acceptable:.2f})" if random_acceptable is not None else ""
    numbers = {
        "candidate": candidate.value,
        "candidate_low": candidate.low,
        "candidate_high": candidate.high,
        "best_constant": best_constant,
        "random_acceptable": random_acceptable,
    }
    if best_constant is None:
        return Gate(
            name="beats_references",
            passed=False,
            numbers=numbers,
            detail="no reference accuracy was recorded with the candidate's evaluation: nothing shows it learned",
        )
    passed = candidate.low > best_constant
    detail = (
        f"candidate decision accuracy {candidate.value:.2f} [{candidate.low:.2f}, {candidate.high:.2f}] vs "
        f"always answering the best constant action {best_constant:.2f}{shown}: "
        + (
            "above it beyond the interval"
            if passed
            else "not above it beyond the interval (it has not learned "
            "the decision; train a larger budget, e.g. SRL_FORGE_TRAINING_BUDGET=standard)"
        )
    )
    return Gate(name="beats_references", passed=passed, detail=detail, numbers=numbers)


def guardrail_gate(violations: int) -> Gate:
    return Gate(
        name="no_guardrail_violations",
        passed=violations == 0,
        detail=f"{violations} guardrail violations on the held-out set",
        numbers={"violations": violations},
    )


def latency_gate(ttft_p50_ms: float, budget_ms: float, tier: str) -> Gate:
    passed = ttft_p50_ms <= budget_ms
    return Gate(
        name="latency_budget",
        passed=passed,
        detail=f"time to first token p50 {ttft_p50_ms:.0f} ms vs the {tier} budget {budget_ms:.0f} ms",
        numbers={"ttft_p50_ms": round(ttft_p50_ms, 1), "budget_ms": budget_ms},
    )


def failing(gates: list[Gate]) -> list[Gate]:
    return [g for g in gates if not g.passed]


def gate_reason(gates: list[Gate]) -> str:
    bad = failing(gates)
    return "all gates passed" if not bad else "; ".join(f"{g.name}: {g.detail}" for g in bad)


# --- production serving: vLLM multi-LoRA ------------------------------------------------------

VLLM_QUANTIZATION = {
    "fp8": ["--quantization", "fp8"],
    "bnb-4bit": ["--quantization", "bitsandbytes"],
    "float16": ["--dtype", "float16"],
    "bfloat16": ["--dtype", "bfloat16"],
    "float32": [],
}
HF_BASE_MODELS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def served_name(target: str, tier: str) -> str:
    """What a game asks for: `vampire` (tier 1), `vampire@tier2`, `vampire/count-orlok` (tier 3)."""
    return target if tier in ("tier1", "tier3") else f"{target}@{tier}"


def vllm_config(registry: AdapterRegistry, tiers: dict[str, TierSpec], adapter_path, port: int = 8000) -> dict:
    """One `vllm serve` per base model (tiers sharing a base share a server), every blue slot of
    those tiers as a `--lora-modules name=path` entry; new promotions reach a running server through
    `/v1/load_lora_adapter` with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`.

    `adapter_path(adapter_uri) -> str`: where the server finds the adapter (a local path or a synced
    copy of the S3 artifact)."""
    servers: dict[str, dict] = {}
    for target, tier, adapter in registry.blue_slots():
        spec = tiers[tier]
        base = HF_BASE_MODELS.get(spec.base_model, spec.base_model)
        server = servers.setdefault(
            base,
            {
                "base_model": base,
                "tiers": [],
                "precision": spec.precision["production"],
                "lora_modules": {},
                "max_lora_rank": 0,
            },
        )
        if tier not in server["tiers"]:
            server["tiers"].append(tier)
        server["lora_modules"][served_name(target, tier)] = adapter_path(adapter.adapter_uri)
        rank = int(adapter.lineage.get("lora_rank", 16))
        server["max_lora_rank"] = max(server["max_lora_rank"], rank)
    out = []
    for i, server in enumerate(servers.values()):
        modules = [f"{name}={path}" for name, path in sorted(server["lora_modules"].items())]
        rank = next(r for r in (8, 16, 32, 64, 128, 256) if r >= server["max_lora_rank"])
        args = [
            "vllm",
            "serve",
            server["base_model"],
            "--port",
            str(port + i),
            "--enable-lora",
            "--max-loras",
            str(max(1, len(modules))),
            "--max-lora-rank",
            str(rank),
            *VLLM_QUANTIZATION.get(server["precision"], ["--quantization", server["precision"]]),
            "--lora-modules",
            *modules,
        ]
        # what to send a running server after a promotion or rollback, instead of restarting it
        load_requests = [
            {"method": "POST", "path": "/v1/load_lora_adapter", "json": {"lora_name": name, "lora_path": path}}
            for name, path in sorted(server["lora_modules"].items())
        ]
        out.append(
            {
                **server,
                "lora_modules": dict(sorted(server["lora_modules"].items())),
                "max_lora_rank": rank,
                "env": {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"},
                "command": shlex.join(args),
                "argv": args,
                "load_requests": load_requests,
            }
        )
    return {"servers": out}


class TierOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)
    tier: str
    result: Literal["promoted", "held", "already_blue", "skipped"]
    blue: str | None  # blue after this deployment
    previous_blue: str | None
    reason: str
    gates: list[Gate] = Field(default_factory=list)


def deploy_candidate(
    registry: AdapterRegistry, tiers: dict[str, TierSpec], adapter, serves: str, ttft_p50_ms: float, triggered_by: str
) -> list[TierOutcome]:
    """Land a registered adapter in green on every tier that serves its kind, and promote it to blue
    where every gate passes, reading the adapter's `AdapterMetrics` (its evaluation)."""
    outcomes = []
    for tier, spec in tiers.items():
        if spec.serves != serves:
            continue
        blue = registry.blue(adapter.target, tier)
        if spec.base_model != adapter.base_model:
            outcomes.append(
                TierOutcome(
                    tier=tier,
                    result="skipped",
                    blue=blue,
                    previous_blue=blue,
                    reason=f"the adapter was trained on {adapter.base_model}, {tier} serves {spec.base_model}",
                )
            )
            continue
        if blue == adapter.version:
            outcomes.append(
                TierOutcome(
                    tier=tier,
                    result="already_blue",
                    blue=blue,
                    previous_blue=blue,
                    reason="this version is already serving",
                )
            )
            continue
        registry.land_candidate(adapter.target, tier, adapter.version, triggered_by)
        blue_adapter = registry.get(blue) if blue else None
        metrics = adapter.metrics
        accuracy = metrics.decision_accuracy or Interval.exact(0.0)  # no recorded accuracy shows nothing learned
        gates = [
            accuracy_gate(
                accuracy,
                blue_adapter.metrics.decision_accuracy if blue_adapter else None,
                metrics.held_out_encounters,
            ),
            references_gate(accuracy, metrics.best_constant_accuracy, metrics.random_acceptable_accuracy),
            guardrail_gate(metrics.guardrail_violations),
            latency_gate(ttft_p50_ms, spec.ttft_budget_ms, tier),
        ]
        reason = gate_reason(gates)
        if failing(gates):
            registry.hold(adapter.target, tier, adapter.version, gates, triggered_by, reason)
            outcomes.append(
                TierOutcome(tier=tier, result="held", blue=blue, previous_blue=blue, reason=reason, gates=gates)
            )
        else:
            registry.promote(adapter.target, tier, adapter.version, gates, triggered_by, reason)
            outcomes.append(
                TierOutcome(
                    tier=tier, result="promoted", blue=adapter.version, previous_blue=blue, reason=reason, gates=gates
                )
            )
    return outcomes
