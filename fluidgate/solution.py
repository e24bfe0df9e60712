"""The solved plan as a typed object: LP values per class and what they mean to an operator.

This is what leaves the optimisation stage. Everything an operator reads (the table, the JSON
document, later the controller spec) is computed here from the LP values, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fluidgate.conflict import Conflict
from fluidgate.model import Policy, mixed_gpu_count, revenue_coefficients, service_rates
from fluidgate.solvers.base import TerminationStatus
from fluidgate.verify import Verification

QUEUE_TOL = 1e-7


@dataclass(frozen=True, slots=True)
class ClassSolution:
    """LP values per GPU (`x`, `y_m`, `y_s`, `q_p`, `q_d`) and cluster-wide consequences."""

    name: str
    x: float
    y_m: float
    y_s: float
    q_p: float
    q_d: float
    arrivals: float  # req/s, cluster
    admitted: float  # req/s, cluster
    served: float  # req/s, cluster
    abandonment: float  # share of arrivals
    wait: float  # s
    ttft: float | None  # s; None for a class the plan never admits
    tpot: float | None  # s per output token; None when the class decodes nowhere
    p_solo: float | None  # share of this class's decodes on solo GPUs; None if never served

    @property
    def lp_values(self) -> dict[str, float]:
        return {"x": self.x, "y_m": self.y_m, "y_s": self.y_s, "q_p": self.q_p, "q_d": self.q_d}


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    gpus: int
    max_batch: int
    chunk: float
    mixed_share: float  # Σx
    mixed_gpus: int  # ⌈n·Σx⌉
    solo_gpus: int


@dataclass(frozen=True, slots=True)
class SloOutcome:
    """One SLI after the solve: achieved value, bound, slack, and its shadow price."""

    label: str
    line: int | None
    soft: bool
    value: float | None
    bound: float | None
    op: str
    slack: float | None
    binding: bool
    shadow_price: float | None  # objective units (per GPU per s) per unit of the bound
    violation: float | None = None
    unit: str = ""
    unit_scale: float = 1.0


@dataclass(frozen=True)
class Solution:
    policy: Policy
    solver: str
    status: TerminationStatus
    message: str
    objective: float | None = None  # per GPU per second, soft-SLO penalties subtracted
    revenue_rate: float | None = None  # money per GPU per second, whatever the objective
    penalty: float = 0.0  # soft-SLO penalties subtracted from the objective, per GPU
    classes: tuple[ClassSolution, ...] = ()
    plan: ClusterPlan | None = None
    slos: tuple[SloOutcome, ...] = ()
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    conflict: Conflict | None = None
    # the check of the solver's answer in the policy's own units (fluidgate.verify); an
    # optimal Solution always carries a passed one
    verification: Verification | None = None

    @property
    def optimal(self) -> bool:
        return self.status is TerminationStatus.OPTIMAL

    @property
    def cluster_objective(self) -> float | None:
        return None if self.objective is None else self.objective * self.policy.cluster.gpus


def revenue_per_gpu(policy: Policy, values: dict[str, list[float]]) -> float:
    """Money per GPU per second at these LP values, whatever the policy maximises."""
    total = 0.0
    for i, cls in enumerate(policy.classes):
        k = revenue_coefficients(policy.cluster, cls, policy.pricing)
        total += k.x * values["x"][i] + k.y_m * values["y_m"][i] + k.y_s * values["y_s"][i]
    return total


def class_solutions(
    policy: Policy, values: dict[str, list[float]]
) -> tuple[tuple[ClassSolution, ...], ClusterPlan, list[str]]:
    """Turn per-class LP values into operator quantities, the static plan, and warnings."""
    c = policy.cluster
    n = c.gpus
    out: list[ClassSolution] = []
    warnings: list[str] = []
    for i, cls in enumerate(policy.classes):
        r = service_rates(c, cls)
        x, ym, ys = values["x"][i], values["y_m"][i], values["y_s"][i]
        qp, qd = values["q_p"][i], values["q_d"][i]
        decode_mixed, decode_solo = r.mu_m * ym, r.mu_s * ys
        served = decode_mixed + decode_solo
        tokens_per_s = ym / c.tau + c.gamma * ys
        wait = qp / cls.rate
        out.append(
            ClassSolution(
                name=cls.name,
                x=x, y_m=ym, y_s=ys, q_p=qp, q_d=qd,
                arrivals=n * cls.rate,
                admitted=n * r.mu_p * x,
                served=n * served,
                abandonment=cls.theta * (qp + qd) / cls.rate,
                wait=wait,
                ttft=wait + cls.prompt * c.tau / c.chunk if x > QUEUE_TOL else None,
                tpot=(ym + ys) / tokens_per_s if tokens_per_s > 0 else None,
                p_solo=decode_solo / served if served > 0 else None,
            )
        )
        if qd > QUEUE_TOL:
            warnings.append(
                f"class '{cls.name}' keeps a standing decode backlog of {n * qd:.3g} requests "
                "(prefilled requests waiting for a decode slot): in a real engine that is KV-cache "
                "memory held by requests that make no progress"
            )
    share = sum(values["x"])
    mixed = mixed_gpu_count(n, share)
    plan = ClusterPlan(n, c.max_batch, c.chunk, share, mixed, n - mixed)
    return tuple(out), plan, warnings
