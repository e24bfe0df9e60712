"""The solved plan as a typed object: LP values per class and what they mean to an operator.

This is what leaves the optimisation stage. Everything an operator reads (the table, the JSON
document, later the controller spec) is computed here from the LP values, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fluidgate.conflict import Conflict
from fluidgate.controllers.plan import ClusterPlan, static_plan
from fluidgate.formulations.columns import CLASS_VARS, Var
from fluidgate.gcpause import gc_paused
from fluidgate.metrics import ClassParams, MetricReport, metric_report_of, plan_flow
from fluidgate.model import ClassVectors, Policy
from fluidgate.solvers.base import FloatArray, TerminationStatus
from fluidgate.verify import Verification

__all__ = ["ClassSolution", "ClusterPlan", "Conflict", "PlanReadback", "SloOutcome",
           "Solution", "read_plan"]

QUEUE_TOL = 1e-7

# LP values per class, by variable: what `CompiledLP.variable_values` returns
LpValues = dict[Var, FloatArray]


@dataclass(frozen=True, slots=True)
class ClassSolution:
    """LP values per GPU (`x`, `y_m`, `y_s`, `q_p`, `q_d`), the same cluster-wide (`n·x`, …:
    what an operator and a controller count), and the class's metrics at the optimum."""

    name: str
    x: float
    y_m: float
    y_s: float
    q_p: float
    q_d: float
    prefill_gpus: float  # n·x: GPUs prefilling this class
    decodes_mixed: float  # n·y_m
    decodes_solo: float  # n·y_s
    prefill_queue: float  # n·q_p: requests waiting for prefill
    decode_queue: float  # n·q_d: prefilled requests waiting for a decode slot
    arrivals: float  # req/s, cluster
    admitted: float  # req/s, cluster
    served: float  # req/s, cluster
    abandonment: float  # share of arrivals
    wait: float  # s
    ttft: float | None  # s; None for a class the plan never admits
    tpot: float | None  # s per output token; None when the class decodes nowhere
    p_solo: float  # share of this class's decodes routed to solo GPUs (1 if it completes none)

    @property
    def lp_values(self) -> dict[str, float]:
        return {"x": self.x, "y_m": self.y_m, "y_s": self.y_s, "q_p": self.q_p, "q_d": self.q_d}


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
    metrics: MetricReport | None = None  # every metric of the language at the optimum

    @property
    def optimal(self) -> bool:
        return self.status is TerminationStatus.OPTIMAL

    @property
    def cluster_objective(self) -> float | None:
        return None if self.objective is None else self.objective * self.policy.cluster.gpus


@dataclass(frozen=True)
class PlanReadback:
    """Everything read off one optimum's LP values, once: per-class values and metrics, the
    static plan, every metric of the language, and warnings."""

    classes: tuple[ClassSolution, ...]
    plan: ClusterPlan
    metrics: MetricReport
    warnings: tuple[str, ...]

    @property
    def revenue_rate(self) -> float:
        """Money per GPU per second, whatever the policy maximises."""
        return self.metrics.revenue / self.plan.gpus


def read_plan(policy: Policy, values: LpValues,
              vectors: ClassVectors | None = None) -> PlanReadback:
    """Turn per-class LP values into operator quantities, the static plan, and warnings.

    Every class at once (numpy columns; `vectors` are the policy's, computed here when not
    given): at 50,000 classes a class-by-class pass took longer than the solve.
    """
    with gc_paused():  # two result objects per class, no cycles
        return _read_plan(policy, values, vectors)


def _read_plan(policy: Policy, values: LpValues, vectors: ClassVectors | None) -> PlanReadback:
    c = policy.cluster
    n = c.gpus
    v = ClassVectors.of(policy) if vectors is None else vectors
    x, ym, ys, qp, qd = (values[var] for var in CLASS_VARS)
    metrics = metric_report_of(policy, v, plan_flow(ClassParams.of_vectors(v), x, ym, ys, qp,
                                                    qd))
    per_class = [a.tolist() for a in (x, ym, ys, qp, qd, n * x, n * ym, n * ys, n * qp,
                                      n * qd)]
    out = tuple(ClassSolution(  # positionally: 50,000 keyword calls cost a tenth of a second
        m.name, x_i, ym_i, ys_i, qp_i, qd_i, nx, nym, nys, nqp, nqd, m.rate, m.admitted,
        m.served, m.abandonment, m.wait, m.ttft, m.tpot, m.p_solo)
        for m, x_i, ym_i, ys_i, qp_i, qd_i, nx, nym, nys, nqp, nqd
        in zip(metrics.classes, *per_class, strict=True))
    warnings = tuple(
        f"class '{policy.classes[i].name}' keeps a standing decode backlog of "
        f"{n * float(qd[i]):.3g} requests (prefilled requests waiting for a decode slot): in "
        "a real engine that is KV-cache memory held by requests that make no progress"
        for i in (qd > QUEUE_TOL).nonzero()[0].tolist())
    plan = static_plan(c, sum(per_class[0]))
    return PlanReadback(out, plan, metrics, warnings)
