"""The typed policy: what every stage after the parser reads.

Values are normalised to seconds, tokens, requests per second *per GPU* and money per token;
the language front end does the unit work so nothing downstream ever sees a unit. The derived
service rates of DESIGN.md §1 live here, in one place, so the formulation, the report and the
simulator cannot disagree about what `μ_p` means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from fluidgate.diagnostics import Span

PricingMode = Literal["bundled", "separate"]


class Objective(StrEnum):
    REVENUE = "revenue"
    THROUGHPUT = "throughput"
    SERVED = "served"


@dataclass(frozen=True, slots=True)
class IterationTime:
    """`τ_mix(C) = alpha + beta·C` seconds and `τ_solo` seconds, where the constants came from.

    `source` is `"inline"` or the path of the calibration file the policy referenced.
    """

    alpha: float
    beta: float
    tau_solo: float
    source: str = "inline"

    def tau_mix(self, chunk: float) -> float:
        return self.alpha + self.beta * chunk

    @property
    def gamma(self) -> float:
        return 1.0 / self.tau_solo


@dataclass(frozen=True, slots=True)
class Cluster:
    gpus: int
    max_batch: int
    chunk: float
    iteration: IterationTime

    @property
    def tau(self) -> float:
        """Duration of a mixed iteration at the policy's chunk size."""
        return self.iteration.tau_mix(self.chunk)

    @property
    def gamma(self) -> float:
        """Decode iterations per second on a solo GPU."""
        return self.iteration.gamma


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    """One kind of traffic. `rate` is per GPU; prices are per token after class overrides."""

    name: str
    rate: float
    prompt: float
    output: float
    patience: float | None
    price_input: float
    price_output: float
    weight: float = 1.0
    span: Span | None = field(default=None, compare=False)

    @property
    def theta(self) -> float:
        """Abandonment rate; a class without patience never leaves."""
        return 0.0 if self.patience is None else 1.0 / self.patience

    @property
    def bundled_price(self) -> float:
        """`w_i`: what one completed request pays under bundled pricing."""
        return self.price_input * self.prompt + self.price_output * self.output


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-request service rates of DESIGN.md §1 for one class on one cluster."""

    mu_p: float
    mu_m: float
    mu_s: float


def service_rates(cluster: Cluster, cls: WorkloadClass) -> Rates:
    tau = cluster.tau
    return Rates(
        mu_p=cluster.chunk / (cls.prompt * tau),
        mu_m=1.0 / (cls.output * tau),
        mu_s=cluster.gamma / cls.output,
    )


@dataclass(frozen=True, slots=True)
class RevenueCoefficients:
    """Money per GPU per second earned per unit of the class's `x`, `y_m` and `y_s`.

    The one definition of DESIGN.md §2's two objectives, shared by the LP objective, the
    `revenue` metric of SLOs and the revenue reported after a solve.
    """

    x: float
    y_m: float
    y_s: float


def revenue_coefficients(
    cluster: Cluster, cls: WorkloadClass, pricing: PricingMode
) -> RevenueCoefficients:
    if pricing == "bundled":  # w_i per completion: completions = μ_m·y_m + μ_s·y_s
        r = service_rates(cluster, cls)
        return RevenueCoefficients(0.0, cls.bundled_price * r.mu_m, cls.bundled_price * r.mu_s)
    return RevenueCoefficients(  # prefill tokens at c_p, decode tokens at c_d
        cls.price_input * cluster.chunk / cluster.tau,
        cls.price_output / cluster.tau,
        cls.price_output * cluster.gamma,
    )


# --- service-level constraints, as checked expression trees -------------------------------

Op = Literal["<=", ">=", "=="]


@dataclass(frozen=True, slots=True)
class Const:
    """A literal, normalised to base units (cluster-wide for rates and money)."""

    value: float
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class MetricRef:
    """A metric applied to one class (or to no class); `all` has already been expanded."""

    name: str
    arg: str | None
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class BinOp:
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span | None = None


Expr = Const | MetricRef | BinOp | Neg


@dataclass(frozen=True, slots=True)
class SloConstraint:
    """One line of the `slo` block (one per class when the source said `all`)."""

    label: str
    lhs: Expr
    op: Op
    rhs: Expr
    soft: bool = False
    penalty: float = 0.0
    text: str = ""
    span: Span | None = None
    unit: str = ""  # display unit of the constraint's sides, e.g. "ms"
    unit_scale: float = 1.0  # base units per display unit


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    cluster: Cluster
    pricing: PricingMode
    classes: tuple[WorkloadClass, ...]
    objective: Objective = Objective.REVENUE
    slos: tuple[SloConstraint, ...] = ()
    source_file: str = "<memory>"
    source_text: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)


def mixed_gpu_count(gpus: int, mixed_share: float) -> int:
    """Static planning: `⌈n·Σx⌉`, robust to the solver's last-digit noise."""
    return min(gpus, max(0, math.ceil(gpus * mixed_share - 1e-7)))
