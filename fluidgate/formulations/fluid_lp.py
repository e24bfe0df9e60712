"""The fluid LP of DESIGN.md §2, written in Pyomo so it reads like the paper.

Variables are per GPU (scaled by n). The Pyomo model is the single source of truth for the
formulation: solvers receive its compiled arrays (`matrix.py`), `explain` prints its
constraints, and SLO constraints (`slo.py`) are added to it as named components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fluidgate.formulations.columns import CLASS_VARS
from fluidgate.metrics import revenue_coefficients
from fluidgate.model import ClassVectors, Objective, Policy, Rates


@dataclass
class FluidLP:
    """A built model plus what is needed to read its solution back."""

    policy: Policy
    model: Any  # pyomo ConcreteModel; None where the arrays came from base_arrays.base_lp
    # name of each SLO-derived Pyomo constraint component -> the SloConstraint index
    rows: list[Any] = field(default_factory=list)  # compiled SLO rows, see slo.py

    @cached_property
    def vectors(self) -> ClassVectors:
        """The policy's classes as numpy columns, with their service rates, built once."""
        return ClassVectors.of(self.policy)

    @cached_property
    def rates(self) -> list[Rates]:
        """Each class's service rates (`service_rates`), for the Pyomo rows; built when first
        asked for, since the array path never needs 50,000 `Rates` objects."""
        return self.vectors.rates()


def class_completions(lp: FluidLP, i: int) -> Any:
    """Per-GPU completion rate of class i: `μ_m·y_m + μ_s·y_s` as a Pyomo expression."""
    m, r = lp.model, lp.rates[i]
    return r.mu_m * m.y_m[i] + r.mu_s * m.y_s[i]


def _objective_expr(lp: FluidLP) -> Any:
    import pyomo.core as pyo

    policy, m = lp.policy, lp.model
    c = policy.cluster
    K = range(len(policy.classes))
    if policy.objective is Objective.SERVED:
        return pyo.quicksum(class_completions(lp, i) for i in K)
    if policy.objective is Objective.THROUGHPUT:
        return pyo.quicksum(
            (cls.prompt + cls.output) * class_completions(lp, i)
            for i, cls in enumerate(policy.classes)
        )
    coeffs = [revenue_coefficients(c, cls, policy.pricing) for cls in policy.classes]
    return pyo.quicksum(
        k.x * m.x[i] + k.y_m * m.y_m[i] + k.y_s * m.y_s[i] for i, k in enumerate(coeffs)
    )


def build_fluid_lp(policy: Policy) -> FluidLP:
    """Build the base LP (capacity and flow balance) with the policy's objective."""
    import pyomo.core as pyo

    c = policy.cluster
    B = float(c.max_batch)
    m = pyo.ConcreteModel(name=policy.name)
    m.K = pyo.RangeSet(0, len(policy.classes) - 1)
    for name in CLASS_VARS:
        setattr(m, name.value, pyo.Var(m.K, domain=pyo.NonNegativeReals))
    for i, cls in enumerate(policy.classes):
        if cls.theta == 0.0:  # nobody leaves: queues carry no flow, pin them for clean reports
            m.q_p[i].fix(0.0)
            m.q_d[i].fix(0.0)

    m.one_prefill_per_gpu = pyo.Constraint(expr=pyo.quicksum(m.x[i] for i in m.K) <= 1.0)
    m.mixed_decode_slots = pyo.Constraint(
        expr=pyo.quicksum(m.y_m[i] for i in m.K) - (B - 1.0) * pyo.quicksum(m.x[i] for i in m.K)
        <= 0.0
    )
    m.solo_decode_slots = pyo.Constraint(
        expr=pyo.quicksum(m.y_s[i] for i in m.K) + B * pyo.quicksum(m.x[i] for i in m.K) <= B
    )

    classes = policy.classes

    def prefill_balance(mm: Any, i: int) -> Any:
        return rates[i].mu_p * mm.x[i] + classes[i].theta * mm.q_p[i] == classes[i].rate

    def decode_balance(mm: Any, i: int) -> Any:
        r = rates[i]
        return (
            r.mu_p * mm.x[i] - classes[i].theta * mm.q_d[i] - r.mu_m * mm.y_m[i]
            - r.mu_s * mm.y_s[i]
            == 0.0
        )

    lp = FluidLP(policy=policy, model=m)
    rates = lp.rates
    m.prefill_balance = pyo.Constraint(m.K, rule=prefill_balance)
    m.decode_balance = pyo.Constraint(m.K, rule=decode_balance)
    m.revenue_rate = pyo.Expression(expr=_objective_expr(lp))
    m.penalties = pyo.Expression(expr=0.0)
    m.objective = pyo.Objective(expr=m.revenue_rate - m.penalties, sense=pyo.maximize)
    return lp
