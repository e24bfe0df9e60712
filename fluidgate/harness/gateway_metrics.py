"""The gateway's Prometheus metrics, in a registry of its own (no process-global state).

Occupancy gauges are read from the controller when `/metrics` is scraped, next to the
plan's targets for the same quantity, so a dashboard shows `prefilling` against `n·x*`
per class. Latencies are model seconds. Outcome counters follow the load generator's
outcomes (served, abandoned, rejected, failed); a request rejected before it was
classified is counted under class `unknown`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from fluidgate.controllers.runtime import ControllerStats
from fluidgate.controllers.spec import ControllerSpec

if TYPE_CHECKING:
    from fluidgate.harness.backends import Backends

PREFIX = "fluidgate_gateway"
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
TPOT_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)


class Outcome(StrEnum):
    SERVED = "served"
    ABANDONED = "abandoned"
    REJECTED = "rejected"
    FAILED = "failed"


class GatewayMetrics:
    def __init__(self, spec: ControllerSpec) -> None:
        self.names = [c.name for c in spec.classes]
        r = self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_requests", "Requests by class and outcome",
                                ["class_name", "outcome"], registry=r)
        self.engines_down = Counter(f"{PREFIX}_engine_down_events",
                                    "Times an engine was marked down", registry=r)
        self.ttft = Histogram(f"{PREFIX}_ttft_seconds", "Time to first token (model s)",
                              ["class_name"], buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram(f"{PREFIX}_tpot_seconds", "Time per output token (model s)",
                              ["class_name"], buckets=TPOT_BUCKETS, registry=r)
        self.state = Gauge(f"{PREFIX}_requests_in_state", "Requests now in each state",
                           ["class_name", "state"], registry=r)
        self.target = Gauge(f"{PREFIX}_plan_target", "The plan's target for the same state",
                            ["class_name", "state"], registry=r)
        self.admitted = Gauge(f"{PREFIX}_admitted", "Prefills admitted so far",
                              ["class_name"], registry=r)
        self.engines_up = Gauge(f"{PREFIX}_engines_up", "Engines up, by pool", ["pool"],
                                registry=r)

    def outcome(self, cls: int | None, outcome: Outcome) -> None:
        name = "unknown" if cls is None else self.names[cls]
        self.requests.labels(name, outcome.value).inc()

    def latency(self, cls: int, ttft: float, tpot: float | None) -> None:
        self.ttft.labels(self.names[cls]).observe(ttft)
        if tpot is not None:
            self.tpot.labels(self.names[cls]).observe(tpot)

    def render(self, stats: ControllerStats, backends: Backends) -> tuple[bytes, str]:
        for c in stats.classes:
            for state, now, target in (
                    ("waiting", c.waiting, c.target_waiting),
                    ("prefilling", c.prefilling, c.target_prefilling),
                    ("decoding_solo", c.decoding_solo, c.target_decoding_solo),
                    ("decoding_mixed", c.decoding_mixed, c.target_decoding_mixed)):
                self.state.labels(c.name, state).set(now)
                self.target.labels(c.name, state).set(target)
            self.state.labels(c.name, "buffered").set(c.buffered)
            self.admitted.labels(c.name).set(c.admitted)
        for pool in ("mixed", "solo"):
            self.engines_up.labels(pool).set(sum(
                b.up for b in backends.all if b.pool.name.lower() == pool))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
