"""The server's Prometheus metrics (`GET /metrics`): requests, time to first token and to the whole answer,
guard replacements, rules-engine verdicts and timeouts, per served model and adapter version.

Each server keeps its own registry (not the process-wide default), so two servers in one process (tests,
blue and green side by side) count apart. Labels come only from what the server itself serves: a request
for a model it does not serve is counted under `model="unknown"`, so a client cannot grow the label set."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from srl_forge.player_logs import PlayerLogRecord

# seconds: the tiers' budgets (0.5 / 0.8 / 1 s) fall on bucket edges, so a p50 against a budget reads off directly
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
ANSWER_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
UNKNOWN_MODEL = "unknown"
VERSION_CHARS = 12  # adapter versions are content hashes: the first 12 characters name one


def short_version(version: str | None) -> str:
    return (version or "")[:VERSION_CHARS]


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ["model", "adapter_version"]
        self.requests = Counter(
            "srl_forge_requests",
            "Chat requests by outcome (ok, or the HTTP status refused with).",
            ["model", "status"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "srl_forge_ttft_seconds", "Time to the first generated token.", labels, buckets=TTFT_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.answer = Histogram(
            "srl_forge_answer_seconds", "Time to the whole generated answer.", labels, buckets=ANSWER_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.tokens = Counter("srl_forge_generated_tokens", "Tokens generated.", labels, registry=self.registry)
        self.guard_replacements = Counter(
            "srl_forge_guard_replacements",
            "Answers the guardrails replaced, by category.",
            [*labels, "category"],
            registry=self.registry,
        )
        self.rules_violations = Counter(
            "srl_forge_rules_violations",
            "Answers whose action the rules engine refused in their encounter, by what the tier did (replace | log).",
            [*labels, "enforcement"],
            registry=self.registry,
        )
        self.unreadable = Counter(
            "srl_forge_unreadable_answers",
            "Answers not in the ACTION/SAY format, ended with the rules engine's decision.",
            labels,
            registry=self.registry,
        )
        self.timeouts = Counter(
            "srl_forge_timeouts", "Answers stopped at the request time limit.", labels, registry=self.registry
        )
        self.engine_errors = Counter(
            "srl_forge_engine_errors",
            "Answers the engine failed mid-way, ended with the rules engine's decision.",
            labels,
            registry=self.registry,
        )
        self.disclosures = Counter(
            "srl_forge_player_disclosures",
            "Players who disclosed real-world danger (answered with the step-back line).",
            labels,
            registry=self.registry,
        )
        self.served_models = Gauge("srl_forge_served_models", "Models being served.", registry=self.registry)

    def refused(self, model: str, status: int) -> None:
        self.requests.labels(model=model, status=str(status)).inc()

    def answered(self, record: PlayerLogRecord) -> None:
        served = record.served
        labels = {"model": served.model, "adapter_version": short_version(served.adapter_version)}
        self.requests.labels(model=served.model, status="ok").inc()
        if served.ttft_ms is not None:
            self.ttft.labels(**labels).observe(served.ttft_ms / 1000)
        if served.total_ms is not None:
            self.answer.labels(**labels).observe(served.total_ms / 1000)
        if served.generated_tokens:
            self.tokens.labels(**labels).inc(served.generated_tokens)
        for category in served.guardrail_categories:
            self.guard_replacements.labels(**labels, category=category).inc()
        if served.rules is not None and not served.rules.passed:
            self.rules_violations.labels(**labels, enforcement=served.rules.enforcement).inc()
        replaced_otherwise = served.guardrail_categories or served.disclosure or served.timed_out or served.engine_error
        if not served.format_ok and not replaced_otherwise and not (served.rules and served.rules.replaced):
            self.unreadable.labels(**labels).inc()
        if served.timed_out:
            self.timeouts.labels(**labels).inc()
        if served.engine_error:
            self.engine_errors.labels(**labels).inc()
        if served.disclosure:
            self.disclosures.labels(**labels).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
