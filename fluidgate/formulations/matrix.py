"""Compile a Pyomo `FluidLP` to the arrays solvers take, keeping the way back.

Each active constraint body goes through Pyomo's `LinearRepnVisitor` (the engine of its
standard-form compiler), and the CSC arrays are assembled with numpy. Going through the
visitor rather than `LinearStandardFormCompiler` itself keeps SciPy out of the solve path:
Pyomo's SciPy hook imports `scipy.stats` (over a second, cold), which alone broke the
1.5 s budget for a cold `fluidgate solve`. Rows keep the constraint's own orientation
(`lb ≤ body ≤ ub`) and `rows[r]` names the constraint behind row r, so duals and
infeasible subsets map back to policy lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

from fluidgate.formulations.columns import CLASS_VARS, SPREAD_VARS, Column, Var, column_of
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.solvers.base import CscMatrix, MatrixLP


@dataclass(frozen=True)
class RowRef:
    """Which constraint a row came from (component name and index)."""

    component: str
    index: object


@dataclass(frozen=True)
class CompiledLP:
    matrix: MatrixLP
    rows: list[RowRef]
    columns: list[tuple[str, object]]  # (Pyomo component, index): equal to a `Column`

    @cached_property
    def _column_index(self) -> dict[Column, int]:
        out: dict[Column, int] = {}
        for j, (name, idx) in enumerate(self.columns):
            col = column_of(name, idx)
            if col is not None:
                out[col] = j
        return out

    def column_index(self) -> Mapping[Column, int]:
        """Solver column of each LP variable the compiler kept (others are fixed at 0).

        SLO and violation columns are left out: they are read by row, not by name.
        Built once per compiled LP (scaling, each solve attempt and the read-back use it).
        """
        return MappingProxyType(self._column_index)

    def variable_values(self, x: np.ndarray, size: int) -> dict[Var, list[float]]:
        """Per-class values of the LP variables (x, y_m, y_s, q_p, q_d), in one pass; 0 for
        entries that are not columns (fixed at 0)."""
        out = {var: [0.0] * size for var in CLASS_VARS}
        for col, j in self.column_index().items():
            if col.var in out and col.cls_index is not None:
                out[col.var][col.cls_index] = float(x[j])
        return out


def _linear(visitor: Any, expr: Any, col_of: dict[int, int], var_map: dict[int, Any],
            columns: list[Any]) -> tuple[list[int], list[float], float]:
    repn = visitor.walk_expression(expr)
    if getattr(repn, "nonlinear", None) is not None:
        raise ValueError("the model is not linear")
    mult = float(repn.multiplier)
    cols: list[int] = []
    vals: list[float] = []
    for vid, coef in repn.linear.items():
        j = col_of.get(vid)
        if j is None:
            j = col_of[vid] = len(columns)
            columns.append(var_map[vid])
        cols.append(j)
        vals.append(float(coef) * mult)
    return cols, vals, float(repn.constant) * mult


def compile_matrix(lp: FluidLP) -> CompiledLP:
    import pyomo.core as pyo
    from pyomo.repn.linear import LinearRepnVisitor
    from pyomo.repn.util import VarRecorder

    m = lp.model
    var_map: dict[int, Any] = {}
    visitor = LinearRepnVisitor({}, var_recorder=VarRecorder(var_map, None))
    col_of: dict[int, int] = {}
    columns: list[Any] = []
    obj = next(m.component_data_objects(pyo.Objective, active=True))
    obj_cols, obj_vals, offset = _linear(visitor, obj.expr, col_of, var_map, columns)
    sign = 1.0 if obj.sense == pyo.maximize else -1.0

    row_idx: list[int] = []
    col_idx: list[int] = []
    data: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    rows: list[RowRef] = []
    for con in m.component_data_objects(pyo.Constraint, active=True):
        cols, vals, const = _linear(visitor, con.body, col_of, var_map, columns)
        r = len(rows)
        row_idx.extend([r] * len(cols))
        col_idx.extend(cols)
        data.extend(vals)
        lb, ub = con.lb, con.ub
        lower.append(-np.inf if lb is None else float(lb) - const)
        upper.append(np.inf if ub is None else float(ub) - const)
        rows.append(RowRef(con.parent_component().name, con.index()))

    n_cols = len(columns)
    c = np.zeros(n_cols)
    np.add.at(c, np.asarray(obj_cols, dtype=np.int64), sign * np.asarray(obj_vals))
    A = CscMatrix.from_triplets(len(rows), n_cols, row_idx, col_idx, data)
    col_lower = np.array([-np.inf if v.lb is None else v.lb for v in columns], dtype=np.float64)
    col_upper = np.array([np.inf if v.ub is None else v.ub for v in columns], dtype=np.float64)
    named = [(v.parent_component().name, v.index()) for v in columns]
    matrix = MatrixLP(
        c=c,
        offset=sign * offset,
        A=A,
        row_lower=np.asarray(lower, dtype=np.float64),
        row_upper=np.asarray(upper, dtype=np.float64),
        col_lower=col_lower,
        col_upper=col_upper,
        row_names=[f"{r.component}[{r.index}]" if r.index is not None else r.component
                   for r in rows],
        col_names=[f"{n}[{i}]" if i is not None else n for n, i in named],
    )
    return CompiledLP(matrix, rows, named)


def column_magnitudes(lp: FluidLP, compiled: CompiledLP) -> np.ndarray:
    """The largest value each column can physically take, from the policy (NaN: unknown).

    Flow balance bounds every base variable by its class's arrivals: a class cannot hold
    more prefill share than `λ/μ_p` (nor more than every GPU), more decode streams than it
    can complete (what it admits over `μ`) or than the slots allow, or longer queues than
    what enters them over `θ`. These are the
    units `fluidgate.solvers.scaling` solves in, and the sizes verification measures by.
    """
    policy = lp.policy
    B = float(policy.cluster.max_batch)
    size: dict[Var, list[float]] = {var: [] for var in CLASS_VARS}
    for cls, r in zip(policy.classes, lp.rates, strict=True):
        lam = cls.rate
        admitted = min(lam, r.mu_p)  # requests/s: at most every GPU prefilling the class
        x = admitted / r.mu_p
        size[Var.X].append(x)
        size[Var.Y_M].append(min((B - 1.0) * x, admitted / r.mu_m))
        size[Var.Y_S].append(min(B, admitted / r.mu_s))
        size[Var.Q_P].append(lam / cls.theta if cls.theta > 0 else 0.0)
        size[Var.Q_D].append(admitted / cls.theta if cls.theta > 0 else 0.0)
    weights = [c.weight for c in policy.classes]
    epigraph: dict[Var, float] = {}
    for hi, lo, var in SPREAD_VARS.values():  # hi, lo bound the class's share over weight
        epigraph[hi] = epigraph[lo] = max(
            v / w for v, w in zip(size[var], weights, strict=True))
    out = np.full(len(compiled.columns), np.nan)
    for col, j in compiled.column_index().items():
        if col.cls_index is not None:
            out[j] = size[col.var][col.cls_index]
        elif col.var in epigraph:
            out[j] = epigraph[col.var]
    return out
