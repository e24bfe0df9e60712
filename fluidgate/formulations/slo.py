"""Add compiled SLO rows to a `FluidLP`, and read their outcomes after a solve.

Hard SLOs are rows; soft ones get a violation variable whose penalty is subtracted from the
objective (per GPU per second, the objective's own units). `spread` pools get epigraph
variables `hi ≥ x_i/w_i ≥ lo`, so a bound on `hi − lo` bounds the largest gap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fluidgate.diagnostics import PolicyError
from fluidgate.formulations.columns import SPREAD_VARS, Column, Var
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.formulations.matrix import CompiledLP
from fluidgate.formulations.slo_compile import LinearRow, compile_all
from fluidgate.metrics import Metric, MetricReport
from fluidgate.model import BinOp, Const, Expr, MetricRef, Neg, Policy
from fluidgate.solution import SloOutcome
from fluidgate.solvers.base import FloatArray, SolverResult

BINDING_TOL = 1e-6


def compile_slos(policy: Policy) -> list[LinearRow]:
    """The policy's SLOs as linear rows; raises `PolicyError` if any is not linear."""
    compiled = compile_all(policy)
    if compiled.errors:
        raise PolicyError(compiled.errors, policy.source_text)
    return compiled.rows


def add_slos(lp: FluidLP) -> list[LinearRow]:
    """Compile the policy's SLOs and add them to the Pyomo model (`slo_arrays.slo_lp`
    writes the same rows as arrays); raises `PolicyError` if any is not linear."""
    import pyomo.core as pyo

    policy, m = lp.policy, lp.model
    if not policy.slos:
        lp.rows = []
        return []
    rows = compile_slos(policy)
    pools = sorted({p for r in rows for p in r.uses_spread})
    for pool in pools:
        hi, lo, var = SPREAD_VARS[pool]
        setattr(m, hi.value, pyo.Var(domain=pyo.Reals))
        setattr(m, lo.value, pyo.Var(domain=pyo.Reals))
        weights = [c.weight for c in policy.classes]
        setattr(m, f"{hi.value}_bound", pyo.Constraint(
            m.K, rule=lambda mm, i, v=var, h=hi, w=weights: _var(mm, Column(v, i)) / w[i]
            <= _var(mm, Column(h))))
        setattr(m, f"{lo.value}_bound", pyo.Constraint(
            m.K, rule=lambda mm, i, v=var, lw=lo, w=weights: _var(mm, Column(lw))
            <= _var(mm, Column(v, i)) / w[i]))
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


def _var(m: Any, col: Column) -> Any:
    component = getattr(m, col.var.value)
    return component if col.cls_index is None else component[col.cls_index]


def _evaluate(rb: MetricReport, e: Expr) -> float | None:
    """Numeric value of an SLO side at a solution (None where a ratio is undefined)."""
    if isinstance(e, Const):
        return e.value
    if isinstance(e, MetricRef):
        return rb.value(Metric(e.name), e.arg)
    if isinstance(e, Neg):
        v = _evaluate(rb, e.operand)
        return None if v is None else -v
    assert isinstance(e, BinOp)
    a = _evaluate(rb, e.left)
    b = _evaluate(rb, e.right)
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
    lp: FluidLP,
    compiled: CompiledLP,
    result: SolverResult,
    values: dict[Var, FloatArray],
    metrics: MetricReport,
) -> tuple[list[SloOutcome], float]:
    """Each SLO's achieved value, bound, slack and shadow price, and the total soft-SLO
    penalty subtracted from the objective."""
    assert result.x is not None and result.row_duals is not None
    x = result.x
    if not lp.rows:  # nothing to read (and no column tables to build at 50,000 classes)
        return [], 0.0
    col_index = {name: j for j, name in enumerate(compiled.columns)}
    lp_columns = compiled.column_index()
    duals = {ref.index: float(result.row_duals[r]) for r, ref in enumerate(compiled.rows)
             if ref.component == "slo"}

    def val(col: Column) -> float:
        if col.cls_index is not None:
            return float(values[col.var][col.cls_index])
        j = lp_columns.get(col)
        return float(x[j]) if j is not None else 0.0

    outcomes: list[SloOutcome] = []
    penalties = 0.0
    for k, row in enumerate(lp.rows):
        slo = row.slo
        violation = None
        if slo.soft:
            violation = _column_value(col_index, x, ("violation", k))
            if row.equality:
                violation += _column_value(col_index, x, ("violation_below", k))
            penalties += slo.penalty * violation
        lhs, rhs = _evaluate(metrics, slo.lhs), _evaluate(metrics, slo.rhs)
        slack = None
        if lhs is not None and rhs is not None:
            slack = (rhs - lhs) if slo.op == "<=" else (lhs - rhs) if slo.op == ">=" else 0.0
        dual = duals.get(k, 0.0)
        grad = row.slack_constant + sum(c * val(col) for col, c in row.slack_gradient.items())
        shadow = -dual * grad if math.isfinite(dual) else None
        if slack is not None and rhs is not None:
            binding = abs(slack) <= BINDING_TOL * max(1.0, abs(rhs))
        else:
            activity = sum(c * val(n) for n, c in row.coeffs.items())
            binding = abs(activity - row.rhs) <= BINDING_TOL * max(1.0, abs(row.rhs))
        outcomes.append(SloOutcome(
            label=slo.label, line=slo.span.line if slo.span else None, soft=slo.soft,
            value=lhs, bound=rhs, op=slo.op, slack=slack, binding=binding or row.equality,
            shadow_price=shadow, violation=violation, unit=slo.unit,
            unit_scale=slo.unit_scale))
    return outcomes, penalties


def _column_value(col_index: dict[tuple[str, object], int], x: np.ndarray,
                  column: tuple[str, object]) -> float:
    """A column's value by name; 0 for a variable the compiler left out (fixed at 0)."""
    j = col_index.get(column)
    return float(x[j]) if j is not None else 0.0
