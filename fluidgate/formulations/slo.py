"""Add compiled SLO rows to a `FluidLP`, and read their outcomes after a solve.

Hard SLOs are rows; soft ones get a violation variable whose penalty is subtracted from the
objective (per GPU per second, the objective's own units). `spread` pools get epigraph
variables `hi ≥ x_i/w_i ≥ lo`, so a bound on `hi − lo` bounds the largest gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluidgate.diagnostics import PolicyError
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.formulations.matrix import CompiledLP
from fluidgate.formulations.slo_compile import SPREAD_VARS, LinearRow, compile_all
from fluidgate.model import BinOp, Const, Expr, MetricRef, Neg, Policy, Rates, service_rates
from fluidgate.solution import SloOutcome
from fluidgate.solvers.base import SolverResult

BINDING_TOL = 1e-6


def add_slos(lp: FluidLP) -> list[LinearRow]:
    """Compile the policy's SLOs and add them; raises `PolicyError` if any is not linear."""
    import pyomo.environ as pyo

    policy, m = lp.policy, lp.model
    if not policy.slos:
        lp.rows = []
        return []
    compiled = compile_all(policy)
    if compiled.errors:
        raise PolicyError(compiled.errors, policy.source_text)
    rows = compiled.rows
    pools = sorted({p for r in rows for p in r.uses_spread})
    for pool in pools:
        hi, lo = SPREAD_VARS[pool]
        var = "x" if pool == "prefill" else "y_s"
        setattr(m, hi, pyo.Var(domain=pyo.Reals))
        setattr(m, lo, pyo.Var(domain=pyo.Reals))
        weights = [c.weight for c in policy.classes]
        setattr(m, f"{hi}_bound", pyo.Constraint(
            m.K, rule=lambda mm, i, v=var, h=hi, w=weights: getattr(mm, v)[i] / w[i]
            <= getattr(mm, h)))
        setattr(m, f"{lo}_bound", pyo.Constraint(
            m.K, rule=lambda mm, i, v=var, lw=lo, w=weights: getattr(mm, lw)
            <= getattr(mm, v)[i] / w[i]))
    soft = [k for k, r in enumerate(rows) if r.slo.soft]
    m.SLO = pyo.RangeSet(0, len(rows) - 1)
    m.SOFT = pyo.Set(initialize=soft)
    m.violation = pyo.Var(m.SOFT, domain=pyo.NonNegativeReals)
    m.violation_below = pyo.Var(
        [k for k in soft if rows[k].equality], domain=pyo.NonNegativeReals)

    def row_rule(mm: Any, k: int) -> Any:
        r = rows[k]
        if r.trivial:  # holds whatever the plan: nothing for the solver to see
            return pyo.Constraint.Skip
        body = pyo.quicksum(coef * _var(mm, name) for name, coef in r.coeffs.items())
        if r.slo.soft:
            body = body - mm.violation[k]
            if r.equality:
                body = body + mm.violation_below[k]
        return body == r.rhs if r.equality else body <= r.rhs

    m.slo = pyo.Constraint(m.SLO, rule=row_rule)
    if soft:
        m.penalties.set_value(pyo.quicksum(
            rows[k].slo.penalty * (m.violation[k] + (m.violation_below[k]
                                                      if rows[k].equality else 0))
            for k in soft))
    lp.rows = rows
    return rows


def _var(m: Any, name: str) -> Any:
    if "__" in name:
        var, idx = name.split("__")
        return getattr(m, var)[int(idx)]
    return getattr(m, name)


@dataclass(frozen=True)
class _Lookup:
    """Per-solve lookups, built once so evaluating K SLOs stays O(K)."""

    index: dict[str, int]
    rates: list[Rates]

    @classmethod
    def of(cls, policy: Policy) -> _Lookup:
        return cls({c.name: i for i, c in enumerate(policy.classes)},
                   [service_rates(policy.cluster, c) for c in policy.classes])


def _metric_value(
    policy: Policy, values: dict[str, list[float]], m: MetricRef, look: _Lookup
) -> float | None:
    c = policy.cluster
    n = c.gpus
    K = range(len(policy.classes))
    if m.name == "mixed_gpus":
        return sum(values["x"])
    if m.name == "spread":
        var = "x" if m.arg == "prefill" else "y_s"
        scaled = [values[var][i] / policy.classes[i].weight for i in K]
        return max(scaled) - min(scaled)
    if m.name == "revenue":
        return None  # filled by the caller from the objective
    if m.name == "tpot" and m.arg is None:
        num = sum(values["y_m"][i] + values["y_s"][i] for i in K)
        den = sum(values["y_m"][i] / c.tau + c.gamma * values["y_s"][i] for i in K)
        return num / den if den > 0 else None
    assert m.arg is not None
    i = look.index[m.arg]
    cls, r = policy.classes[i], look.rates[i]
    x, ym, ys = values["x"][i], values["y_m"][i], values["y_s"][i]
    qp, qd = values["q_p"][i], values["q_d"][i]
    return {
        "rate": n * cls.rate,
        "admitted": n * r.mu_p * x,
        "served": n * (r.mu_m * ym + r.mu_s * ys),
        "abandonment": cls.theta * (qp + qd) / cls.rate,
        "wait": qp / cls.rate,
        "ttft": qp / cls.rate + cls.prompt * c.tau / c.chunk,
        "tpot": (ym + ys) / (ym / c.tau + c.gamma * ys) if ym + ys > 0 else None,
    }[m.name]


def evaluate_expr(
    policy: Policy, values: dict[str, list[float]], e: Expr, revenue: float,
    look: _Lookup | None = None,
) -> float | None:
    """Numeric value of an SLO side at a solution (None where a ratio is undefined)."""
    look = look or _Lookup.of(policy)
    if isinstance(e, Const):
        return e.value
    if isinstance(e, MetricRef):
        if e.name == "revenue":
            return revenue * policy.cluster.gpus
        return _metric_value(policy, values, e, look)
    if isinstance(e, Neg):
        v = evaluate_expr(policy, values, e.operand, revenue, look)
        return None if v is None else -v
    assert isinstance(e, BinOp)
    a = evaluate_expr(policy, values, e.left, revenue, look)
    b = evaluate_expr(policy, values, e.right, revenue, look)
    if a is None or b is None:
        return None
    if e.op == "+":
        return a + b
    if e.op == "-":
        return a - b
    if e.op == "*":
        return a * b
    return a / b if b != 0 else None


def read_slos(
    lp: FluidLP, compiled: CompiledLP, result: SolverResult
) -> tuple[list[SloOutcome], float, float]:
    """Each SLO's achieved value, bound, slack and shadow price; the revenue rate (money per
    GPU per second) and the total soft-SLO penalty."""
    from fluidgate.formulations.fluid_lp import VARIABLES
    from fluidgate.solution import revenue_per_gpu

    policy, m = lp.policy, lp.model
    assert result.x is not None and result.row_duals is not None
    x = result.x
    col_index = {name: j for j, name in enumerate(compiled.matrix.col_names)}
    K = len(policy.classes)
    values = {name: compiled.column_values(x, name, K) for name in VARIABLES}
    penalties = 0.0
    rows: list[LinearRow] = lp.rows
    duals = {}
    for r_idx, ref in enumerate(compiled.rows):
        if ref.component == "slo":
            duals[ref.index] = float(result.row_duals[r_idx])
    outcomes: list[SloOutcome] = []

    def val(name: str) -> float:
        if "__" in name:
            var, idx = name.split("__")
            return values[var][int(idx)]
        j = col_index.get(name)
        return float(x[j]) if j is not None else 0.0

    for k, row in enumerate(rows):
        if row.slo.soft:
            viol = _component_value(m, "violation", k, x, col_index)
            if row.equality:
                viol += _component_value(m, "violation_below", k, x, col_index)
            penalties += row.slo.penalty * viol
    revenue = revenue_per_gpu(policy, values)
    look = _Lookup.of(policy)
    for k, row in enumerate(rows):
        slo = row.slo
        lhs = evaluate_expr(policy, values, slo.lhs, revenue, look)
        rhs = evaluate_expr(policy, values, slo.rhs, revenue, look)
        activity = sum(c * val(n) for n, c in row.coeffs.items())
        violation = None
        if slo.soft:
            violation = _component_value(m, "violation", k, x, col_index)
            if row.equality:
                violation += _component_value(m, "violation_below", k, x, col_index)
        slack = None
        if lhs is not None and rhs is not None:
            slack = (rhs - lhs) if slo.op == "<=" else (lhs - rhs) if slo.op == ">=" else 0.0
        dual = duals.get(k, 0.0)
        grad = row.slack_gradient.get("", 0.0) + sum(
            c * val(n) for n, c in row.slack_gradient.items() if n)
        shadow = -dual * grad if math.isfinite(dual) else None
        if slack is not None and rhs is not None:
            binding = abs(slack) <= BINDING_TOL * max(1.0, abs(rhs))
        else:
            binding = abs(activity - row.rhs) <= BINDING_TOL * max(1.0, abs(row.rhs))
        binding = binding or row.equality
        outcomes.append(SloOutcome(
            label=slo.label, line=slo.span.line if slo.span else None, soft=slo.soft,
            value=lhs, bound=rhs, op=slo.op, slack=slack, binding=binding,
            shadow_price=shadow, violation=violation, unit=slo.unit,
            unit_scale=slo.unit_scale))
    return outcomes, revenue, penalties


def _component_value(m: Any, comp: str, k: int, x: np.ndarray, col_index: dict[str, int]) -> float:
    j = col_index.get(f"{comp}[{k}]")
    return float(x[j]) if j is not None else 0.0
