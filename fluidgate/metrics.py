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
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from fluidgate.model import (
    ClassVectors,
    Cluster,
    Policy,
    PricingMode,
    WorkloadClass,
    service_rates,
)
from fluidgate.sli_dsl.units import MONEY_RATE, NUMBER, RATE, TIME, Dim

# A float, or a SymPy expression when the SLO compiler builds a constraint's sides.
Scalar = Any

if TYPE_CHECKING:
    from fluidgate.model import FloatArray

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

    @classmethod
    def of_vectors(cls, v: ClassVectors) -> ClassParams:
        """Every class at once: each field a numpy column, for the elementwise formulas."""
        return cls(v.rate, v.theta, v.prompt, v.mu_p, v.mu_m, v.mu_s)


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


class Priced(Protocol):
    """What a class's revenue depends on: a `WorkloadClass`, or `ClassVectors` (columns)."""

    @property
    def prompt(self) -> Any: ...
    @property
    def price_input(self) -> Any: ...
    @property
    def price_output(self) -> Any: ...
    @property
    def bundled_price(self) -> Any: ...


def class_revenue(f: ClassFlow, wc: Priced, pricing: PricingMode, cluster: Cluster) -> Scalar:
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


def revenue_coefficient_vectors(cluster: Cluster, v: ClassVectors, pricing: PricingMode,
                                ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """`revenue_coefficients` of every class at once (the `x`, `y_m` and `y_s` columns),
    read off the same `class_revenue` elementwise, so each entry is the same bits."""
    p = ClassParams.of_vectors(v)

    def at(x: float, y_m: float, y_s: float) -> FloatArray:
        out: FloatArray = class_revenue(plan_flow(p, x, y_m, y_s, 0.0, 0.0), v, pricing,
                                        cluster)
        return out

    return at(1.0, 0.0, 0.0), at(0.0, 1.0, 0.0), at(0.0, 0.0, 1.0)


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
    _by_name: dict[str, int] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def __post_init__(self) -> None:  # an SLO per class looks its class up: not a scan each
        object.__setattr__(self, "_by_name", {c.name: i for i, c in enumerate(self.classes)})

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
        cm = self.classes[self._by_name[arg]] if arg is not None else None
        if cm is None:
            raise KeyError("a per-class metric needs a class")
        values: dict[Metric, float | None] = {
            Metric.RATE: cm.rate, Metric.ADMITTED: cm.admitted, Metric.SERVED: cm.served,
            Metric.ABANDONMENT: cm.abandonment, Metric.WAIT: cm.wait, Metric.TTFT: cm.ttft,
            Metric.TPOT: cm.tpot}
        return values[metric]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def stack_flows(flows: Sequence[ClassFlow]) -> ClassFlow:
    """Per-class flows as one `ClassFlow` of numpy columns (entry i: `flows[i]`)."""
    import numpy as np

    return ClassFlow(*(np.array([getattr(f, k.name) for f in flows], dtype=np.float64)
                       for k in fields(ClassFlow)))


def metric_report(policy: Policy, flows: Sequence[ClassFlow]) -> MetricReport:
    """Every metric at these per-class flows (from `plan_flow` or `measured_flow`)."""
    return metric_report_of(policy, ClassVectors.of(policy), stack_flows(flows))


def metric_report_of(policy: Policy, v: ClassVectors, f: ClassFlow) -> MetricReport:
    """`metric_report` with every class at once: `v` the policy's classes and `f` their flows
    as numpy columns. Each metric is the function above applied elementwise, and each sum
    over classes adds in class order, so the numbers are those of a class-by-class pass."""
    import numpy as np

    c = policy.cluster
    n = c.gpus
    arrived = f.arrivals > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        abandon = np.where(arrived, abandonment(f), 0.0)
        waits = np.where(arrived, wait(f), 0.0)
        ttfts = waits + prefill_time(v.prompt, c)
        tokens_per_s = token_rate(f, c)
        tpots = tpot(f.decoding, tokens_per_s)
        total = f.served_mixed + f.served_solo
        p_solo = np.where(total > 0, f.served_solo / total, 1.0)  # `solo_share`
    admitted_ok = (f.prefilling > ADMIT_TOL).tolist()
    decodes = (tokens_per_s > 0).tolist()
    out = [ClassMetrics(name, *values) for name, *values in zip(
        (wc.name for wc in policy.classes), rate(f, n).tolist(), admitted(f, n).tolist(),
        served(f, n).tolist(), abandon.tolist(), waits.tolist(),
        [t if ok else None for t, ok in zip(ttfts.tolist(), admitted_ok, strict=True)],
        [t if ok else None for t, ok in zip(tpots.tolist(), decodes, strict=True)],
        p_solo.tolist(), strict=True)]
    revenue = sum(class_revenue(f, v, policy.pricing, c).tolist())

    def spread(pool: Pool) -> float:
        shares = spread_quantity(f, pool) / v.weight
        return float(shares.max() - shares.min())

    return MetricReport(
        classes=tuple(out),
        tpot=_ratio(sum(f.decoding.tolist()), sum(tokens_per_s.tolist())),
        mixed_share=sum(f.prefilling.tolist(), 0.0),  # `mixed_share`, Σ x_i
        spread_prefill=spread(Pool.PREFILL),
        spread_decode=spread(Pool.DECODE),
        revenue=n * revenue)


def measured_report(policy: Policy, measured: Sequence[Measured], duration: float) -> MetricReport:
    """The metrics of a measurement window, in the shape of the plan's `metric_report`, so a
    simulator or harness compares measured with predicted metric by metric."""
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"the measurement window must be a positive time, not {duration!r}")
    g = policy.cluster.gpus
    return metric_report(policy, [measured_flow(m, g, duration) for m in measured])
