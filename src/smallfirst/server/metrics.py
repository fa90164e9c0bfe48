"""Prometheus metrics, fed by receipts: requests, tokens, joules, cost, CO2, latency.

They are also the engines' admission observer: each model's queue depth, how long
requests waited for a slot, and how many were refused (queue full, waited too long,
shutting down), none of which leaves a receipt.

Each app has its own registry (no process-global state), exposed at ``GET /metrics``.
Energy is labelled with its method, so measured and estimated joules are never summed
into one series by accident. Models' breaker states (:mod:`smallfirst.engines.health`) are
read at scrape time. Requests made with an API key are also counted per key name
(``smallfirst_key_*``), a label bounded by the keys an admin made.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from smallfirst.engines.health import Health
from smallfirst.metering.receipts import Receipt

STATES = ("ok", "cooling_down", "probing")


class UpstreamCollector(Collector):
    """Each failing model's breaker state, read when scraped (1 for its state, else 0)."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "smallfirst_upstream_state",
            "Breaker state of models that failed lately (ok, cooling_down, probing)",
            labels=["model", "state"],
        )
        until = GaugeMetricFamily(
            "smallfirst_upstream_cooldown_until_seconds",
            "Epoch time a cooling-down model is next tried",
            labels=["model"],
        )
        for u in self.health.states():
            for name in STATES:
                state.add_metric([u.model, name], 1.0 if u.state == name else 0.0)
            if u.until is not None:
                until.add_metric([u.model], u.until)
        yield state
        yield until


LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "smallfirst_requests", "Completed requests", ["model", "status"], registry=r
        )
        self.tokens = Counter(
            "smallfirst_tokens", "Tokens processed", ["model", "kind"], registry=r
        )
        self.energy = Counter(
            "smallfirst_energy_joules",
            "Energy attributed to requests",
            ["model", "method"],
            registry=r,
        )
        self.cost = Counter("smallfirst_cost_usd", "Cost of requests", ["model"], registry=r)
        self.co2 = Counter("smallfirst_co2_grams", "CO2 of requests", ["model"], registry=r)
        self.saved_energy = Counter(
            "smallfirst_saved_energy_joules",
            "Energy saved against the reference model",
            ["model"],
            registry=r,
        )
        self.cache = Counter(
            "smallfirst_response_cache",
            "Requests the response cache looked up, by result (hit, miss)",
            ["model", "result"],
            registry=r,
        )
        self.duration = Histogram(
            "smallfirst_request_duration_seconds",
            "Request duration",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ttft = Histogram(
            "smallfirst_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )

        self.queue = Gauge(
            "smallfirst_queue_depth", "Requests waiting for a model", ["model"], registry=r
        )
        self.queue_wait = Histogram(
            "smallfirst_queue_wait_seconds",
            "Time requests waited for a model (admitted or not)",
            ["model"],
            buckets=WAIT_BUCKETS_S,
            registry=r,
        )
        self.refusals = Counter(
            "smallfirst_queue_refused",
            "Requests refused before a model ran",
            ["model", "reason"],
            registry=r,
        )

        # per API key (issue #15): labelled by key name, so bounded by the keys an admin
        # made; requests without a key are not counted here
        self.key_requests = Counter(
            "smallfirst_key_requests", "Completed requests per API key", ["key", "status"],
            registry=r,
        )  # fmt: skip
        self.key_energy = Counter(
            "smallfirst_key_energy_joules", "Energy of requests per API key", ["key"], registry=r
        )
        self.key_cost = Counter(
            "smallfirst_key_cost_usd", "Cost of requests per API key", ["key"], registry=r
        )
        self.key_co2 = Counter(
            "smallfirst_key_co2_grams", "CO2 of requests per API key", ["key"], registry=r
        )

    def queue_depth(self, model: str, depth: int) -> None:
        self.queue.labels(model).set(depth)

    def waited(self, model: str, seconds: float) -> None:
        self.queue_wait.labels(model).observe(seconds)

    def refused(self, model: str, reason: str) -> None:
        self.refusals.labels(model, reason).inc()

    def observe(self, receipt: Receipt) -> None:
        if receipt.key_name is not None:
            self._observe_key(receipt.key_name, receipt)
        m = receipt.model
        self.requests.labels(m, receipt.status).inc()
        if receipt.prompt_tokens is not None:
            self.tokens.labels(m, "prompt").inc(receipt.prompt_tokens)
        if receipt.completion_tokens is not None:
            self.tokens.labels(m, "completion").inc(receipt.completion_tokens)
        if receipt.energy_j is not None:
            self.energy.labels(m, receipt.energy_method).inc(receipt.energy_j)
        if receipt.cost_usd is not None:
            self.cost.labels(m).inc(receipt.cost_usd)
        if receipt.co2_g is not None:
            self.co2.labels(m).inc(receipt.co2_g)
        if receipt.saved_energy_j is not None and receipt.saved_energy_j > 0:
            self.saved_energy.labels(m).inc(receipt.saved_energy_j)
        if receipt.cache is not None:
            self.cache.labels(m, receipt.cache).inc()
        self.duration.labels(m).observe(receipt.duration_s)
        if receipt.ttft_s is not None:
            self.ttft.labels(m).observe(receipt.ttft_s)

    def _observe_key(self, key: str, receipt: Receipt) -> None:
        self.key_requests.labels(key, receipt.status).inc()
        if receipt.energy_j is not None:
            self.key_energy.labels(key).inc(receipt.energy_j)
        if receipt.cost_usd is not None:
            self.key_cost.labels(key).inc(receipt.cost_usd)
        if receipt.co2_g is not None:
            self.key_co2.labels(key).inc(receipt.co2_g)

    def watch(self, health: Health) -> None:
        """Show ``health``'s breakers on every scrape."""
        self.registry.register(UpstreamCollector(health))

    def render(self) -> bytes:
        return generate_latest(self.registry)
