"""The operator metrics of the policy language, each defined once.

Three readers need them and must never disagree: the plan's predictions after a solve
(floats from the LP optimum), the SLO compiler (SymPy expressions over LP variables that it
multiplies out into linear rows), and a simulator's measured-vs-predicted report (floats from
counts and time averages). Every metric is a formula in `+ − × ÷` over one class's fluid
state per GPU (`ClassFlow`), so the same function serves all three: given floats it returns a
number, given SymPy symbols it returns the expression the compiler linearises. Values that
can be undefined (a ratio over nothing) are guarded only in the numeric report
(`metric_report`); the symbolic path never evaluates them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from fluidgate.model import Cluster, Policy, PricingMode, WorkloadClass, service_rates
from fluidgate.sli_dsl.units import MONEY_RATE, NUMBER, RATE, TIME, Dim

# A float, or a SymPy expression when the SLO compiler builds a constraint's sides.
Scalar = Any

# Below this a class's prefill occupancy (per GPU) counts as "never admitted": its TTFT is
# then undefined rather than the prefill time of requests that never start.
ADMIT_TOL = 1e-7


class Metric(StrEnum):
    RATE = "rate"
    ADMITTED = "admitted"
    SERVED = "served"
    ABANDONMENT = "abandonment"
    WAIT = "wait"
    TTFT = "ttft"
    TPOT = "tpot"
    SPREAD = "spread"
    MIXED_GPUS = "mixed_gpus"
    REVENUE = "revenue"


class Arity(StrEnum):
    """What goes between a metric's parentheses."""

    CLASS = "class"  # a class name or `all`
    OPTIONAL_CLASS = "optional-class"  # a class, or nothing for the whole cluster
    NONE = "none"
    POOL = "pool"  # `prefill` or `decode`


class Pool(StrEnum):
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass(frozen=True, slots=True)
class MetricInfo:
    dim: Dim
    arity: Arity
    ratio: bool = False  # a quotient of plan quantities: linear only once multiplied out
    meaning: str = ""


CATALOGUE: Mapping[Metric, MetricInfo] = MappingProxyType({
    Metric.RATE: MetricInfo(RATE, Arity.CLASS, meaning="arrival rate (a constant), req/s"),
    Metric.ADMITTED: MetricInfo(RATE, Arity.CLASS, meaning="prefill completions, req/s"),
    Metric.SERVED: MetricInfo(RATE, Arity.CLASS, meaning="completed requests, req/s"),
    Metric.ABANDONMENT: MetricInfo(NUMBER, Arity.CLASS, meaning="share of arrivals that leave"),
    Metric.WAIT: MetricInfo(TIME, Arity.CLASS, meaning="mean wait for prefill (Little's law)"),
    Metric.TTFT: MetricInfo(TIME, Arity.CLASS, meaning="mean time to first token"),
    Metric.TPOT: MetricInfo(TIME, Arity.OPTIONAL_CLASS, ratio=True,
                            meaning="mean time per output token, per class or over all decodes"),
    Metric.SPREAD: MetricInfo(NUMBER, Arity.POOL,
                              meaning="largest gap between classes' weighted occupancy"),
    Metric.MIXED_GPUS: MetricInfo(NUMBER, Arity.NONE, meaning="share of GPUs running prefills"),
    Metric.REVENUE: MetricInfo(MONEY_RATE, Arity.NONE, meaning="revenue rate, money/s"),
})


def depends_on_placement(metric: Metric, arg: str | None) -> bool:
    """Whether a metric's value changes with *where* decodes run at fixed completions.

    `tpot` (per class or cluster) weighs mixed-GPU streams at 1/τ tokens/s against solo ones
    at γ, and `spread(decode)` compares solo streams; every other metric is a function of
    how many requests are admitted, completed or waiting (`served` and the revenue of either
    pricing scheme count completions or output tokens, the same for a decode in either pool).
    """
    return metric is Metric.TPOT or (metric is Metric.SPREAD and arg == Pool.DECODE)


# --- one class's fluid state ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClassParams:
    """What the formulas need to know about a class: `λ`, `θ`, `P` and its service rates."""

    rate: Scalar
    theta: Scalar
    prompt: Scalar
    mu_p: Scalar
    mu_m: Scalar
    mu_s: Scalar

    @classmethod
    def of(cls, cluster: Cluster, wc: WorkloadClass) -> ClassParams:
        r = service_rates(cluster, wc)
        return cls(wc.rate, wc.theta, wc.prompt, r.mu_p, r.mu_m, r.mu_s)


@dataclass(frozen=True, slots=True)
class ClassFlow:
    """One class per GPU: flows in requests/s and time-averaged counts (DESIGN.md §1–2)."""

    arrivals: Scalar
    admitted: Scalar  # prefill completions
    served_mixed: Scalar  # decode completions on mixed GPUs
    served_solo: Scalar  # decode completions on solo GPUs
    abandoned: Scalar  # departures without service, from either queue
    prefilling: Scalar  # x: prefills running
    decoding_mixed: Scalar  # y_m
    decoding_solo: Scalar  # y_s
    waiting_prefill: Scalar  # q_p
    waiting_decode: Scalar  # q_d

    @property
    def served(self) -> Scalar:
        return self.served_mixed + self.served_solo

    @property
    def decoding(self) -> Scalar:
        return self.decoding_mixed + self.decoding_solo


def plan_flow(p: ClassParams, x: Scalar, y_m: Scalar, y_s: Scalar, q_p: Scalar,
              q_d: Scalar) -> ClassFlow:
    """The flows the LP's balance equations (DESIGN.md §2) attach to its variables."""
    return ClassFlow(
        arrivals=p.rate, admitted=p.mu_p * x, served_mixed=p.mu_m * y_m,
        served_solo=p.mu_s * y_s, abandoned=p.theta * (q_p + q_d), prefilling=x,
        decoding_mixed=y_m, decoding_solo=y_s, waiting_prefill=q_p, waiting_decode=q_d)


@dataclass(frozen=True, slots=True)
class Measured:
    """One class over a measurement window, cluster-wide: event counts, and time-averaged
    numbers of requests in each state (what a simulator or a load harness records)."""

    arrivals: float
    admitted: float  # prefills completed
    served_mixed: float  # decodes completed on mixed GPUs
    served_solo: float  # decodes completed on solo GPUs
    abandoned: float
    prefilling: float  # time-average running prefills
    decoding_mixed: float
    decoding_solo: float
    waiting_prefill: float
    waiting_decode: float


def measured_flow(m: Measured, gpus: int, duration: float) -> ClassFlow:
    """Counts over `duration` seconds on `gpus` GPUs, as the per-GPU flows the plan predicts."""
    per = 1.0 / (gpus * duration)
    return ClassFlow(
        arrivals=m.arrivals * per, admitted=m.admitted * per, served_mixed=m.served_mixed * per,
        served_solo=m.served_solo * per, abandoned=m.abandoned * per,
        prefilling=m.prefilling / gpus, decoding_mixed=m.decoding_mixed / gpus,
        decoding_solo=m.decoding_solo / gpus, waiting_prefill=m.waiting_prefill / gpus,
        waiting_decode=m.waiting_decode / gpus)


# --- the metrics (SLI-LANGUAGE.md, DESIGN.md §3) --------------------------------------------


def rate(f: ClassFlow, gpus: int) -> Scalar:
    return gpus * f.arrivals


def admitted(f: ClassFlow, gpus: int) -> Scalar:
    return gpus * f.admitted


def served(f: ClassFlow, gpus: int) -> Scalar:
    return gpus * f.served


def abandonment(f: ClassFlow) -> Scalar:
    return f.abandoned / f.arrivals


def wait(f: ClassFlow) -> Scalar:
    """Little's law on the prefill queue: mean number waiting over the arrival rate."""
    return f.waiting_prefill / f.arrivals


def prefill_time(prompt: Scalar, cluster: Cluster) -> Scalar:
    """`P·τ/C`: a prompt takes P/C mixed iterations of τ seconds."""
    return prompt * cluster.tau / cluster.chunk


def ttft(f: ClassFlow, prompt: Scalar, cluster: Cluster) -> Scalar:
    return wait(f) + prefill_time(prompt, cluster)


def token_rate_coefficients(cluster: Cluster) -> tuple[float, float]:
    """Output tokens per second of one decode on a mixed GPU (`1/τ`) and on a solo one (`γ`)."""
    return 1.0 / cluster.tau, cluster.gamma


def token_rate(f: ClassFlow, cluster: Cluster) -> Scalar:
    per_mixed, per_solo = token_rate_coefficients(cluster)
    return per_mixed * f.decoding_mixed + per_solo * f.decoding_solo


def tpot(decoding: Scalar, tokens_per_s: Scalar) -> Scalar:
    """Running decodes over the tokens they produce per second; per class or summed."""
    return decoding / tokens_per_s


def spread_quantity(f: ClassFlow, pool: Pool) -> Scalar:
    """What `spread(pool)` compares across classes (each divided by the class weight)."""
    return f.prefilling if pool is Pool.PREFILL else f.decoding_solo


def mixed_share(flows: Sequence[ClassFlow]) -> Scalar:
    """`Σ x_i`: the share of GPUs running a prefill (`mixed_gpus` in the language)."""
    return sum((f.prefilling for f in flows), 0.0)


def class_revenue(f: ClassFlow, wc: WorkloadClass, pricing: PricingMode,
                  cluster: Cluster) -> Scalar:
    """Money per GPU per second from one class (DESIGN.md §2's two pricing schemes)."""
    if pricing == "bundled":  # w_i per completed request
        return wc.bundled_price * f.served
    # prompt tokens paid as prefilled, output tokens as decoded
    return wc.price_input * wc.prompt * f.admitted + wc.price_output * token_rate(f, cluster)


def solo_share(served_mixed: float, served_solo: float) -> float:
    """`p_s`: share of the class's decodes that go to the solo pool (DESIGN.md §4); 1 when
    the class completes nothing, so the router's rule is defined for every class."""
    total = served_mixed + served_solo
    return served_solo / total if total > 0 else 1.0


@dataclass(frozen=True, slots=True)
class RevenueCoefficients:
    """Money per GPU per second earned per unit of the class's `x`, `y_m` and `y_s`: the LP
    objective's coefficients, read off `class_revenue` so the two cannot differ."""

    x: float
    y_m: float
    y_s: float


def revenue_coefficients(cluster: Cluster, wc: WorkloadClass,
                         pricing: PricingMode) -> RevenueCoefficients:
    p = ClassParams.of(cluster, wc)

    def at(x: float, y_m: float, y_s: float) -> float:
        return float(class_revenue(plan_flow(p, x, y_m, y_s, 0.0, 0.0), wc, pricing, cluster))

    return RevenueCoefficients(at(1.0, 0.0, 0.0), at(0.0, 1.0, 0.0), at(0.0, 0.0, 1.0))


# --- numeric values: the plan's predictions and a measurement, in one shape --------------


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """Per-class metric values, cluster-wide rates. `abandonment` and `wait` are 0 for a class
    nothing arrived from; `ttft` is None for a class never admitted, `tpot` for one that
    decodes nowhere."""

    name: str
    rate: float
    admitted: float
    served: float
    abandonment: float
    wait: float
    ttft: float | None
    tpot: float | None
    p_solo: float


@dataclass(frozen=True, slots=True)
class MetricReport:
    """Every metric of the language at one state of the cluster (plan or measurement)."""

    classes: tuple[ClassMetrics, ...]
    tpot: float | None  # over all decodes
    mixed_share: float
    spread_prefill: float
    spread_decode: float
    revenue: float  # money per second, cluster-wide

    def value(self, metric: Metric, arg: str | None) -> float | None:
        """The value of `metric(arg)` as an SLO side reads it (arg: class, pool or None)."""
        if metric is Metric.MIXED_GPUS:
            return self.mixed_share
        if metric is Metric.REVENUE:
            return self.revenue
        if metric is Metric.SPREAD:
            return self.spread_prefill if arg == Pool.PREFILL else self.spread_decode
        if metric is Metric.TPOT and arg is None:
            return self.tpot
        cm = next(c for c in self.classes if c.name == arg)
        values: dict[Metric, float | None] = {
            Metric.RATE: cm.rate, Metric.ADMITTED: cm.admitted, Metric.SERVED: cm.served,
            Metric.ABANDONMENT: cm.abandonment, Metric.WAIT: cm.wait, Metric.TTFT: cm.ttft,
            Metric.TPOT: cm.tpot}
        return values[metric]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _spread(classes: Sequence[WorkloadClass], flows: Sequence[ClassFlow], pool: Pool) -> float:
    shares = [spread_quantity(f, pool) / c.weight for c, f in zip(classes, flows, strict=True)]
    return float(max(shares) - min(shares))


def metric_report(policy: Policy, flows: Sequence[ClassFlow]) -> MetricReport:
    """Every metric at these per-class flows (from `plan_flow` or `measured_flow`)."""
    c = policy.cluster
    n = c.gpus
    out: list[ClassMetrics] = []
    for wc, f in zip(policy.classes, flows, strict=True):
        arrived = f.arrivals > 0
        out.append(ClassMetrics(
            name=wc.name, rate=rate(f, n), admitted=admitted(f, n), served=served(f, n),
            abandonment=abandonment(f) if arrived else 0.0, wait=wait(f) if arrived else 0.0,
            ttft=(wait(f) if arrived else 0.0) + prefill_time(wc.prompt, c)
            if f.prefilling > ADMIT_TOL else None,
            tpot=_ratio(f.decoding, token_rate(f, c)),
            p_solo=solo_share(f.served_mixed, f.served_solo)))
    revenue = sum(class_revenue(f, wc, policy.pricing, c)
                  for wc, f in zip(policy.classes, flows, strict=True))
    return MetricReport(
        classes=tuple(out),
        tpot=_ratio(sum(f.decoding for f in flows), sum(token_rate(f, c) for f in flows)),
        mixed_share=float(mixed_share(flows)),
        spread_prefill=_spread(policy.classes, flows, Pool.PREFILL),
        spread_decode=_spread(policy.classes, flows, Pool.DECODE),
        revenue=n * revenue)


def measured_report(policy: Policy, measured: Sequence[Measured], duration: float) -> MetricReport:
    """The metrics of a measurement window, in the shape of the plan's `metric_report`, so a
    simulator or harness compares measured with predicted metric by metric."""
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"the measurement window must be a positive time, not {duration!r}")
    g = policy.cluster.gpus
    return metric_report(policy, [measured_flow(m, g, duration) for m in measured])
