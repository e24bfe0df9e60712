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
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from fluidgate.formulations.columns import CLASS_VARS, SPREAD_VARS, Column, Var, column_of
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.solvers.base import CscMatrix, FloatArray, IndexedNames, MatrixLP

if TYPE_CHECKING:
    from fluidgate.model import Policy
    from fluidgate.verify import Failure

IntArray = np.ndarray[tuple[int], np.dtype[np.int64]]


class RowRef(NamedTuple):
    """Which constraint a row came from (component name and index); a plain pair, cheap to
    make for each of 100,000 rows, and usable as the row's name parts (`IndexedNames`)."""

    component: str
    index: object  # type: ignore[assignment]  # shadows tuple.index, which no one calls


@dataclass(frozen=True)
class CompiledLP:
    matrix: MatrixLP
    rows: list[RowRef]
    columns: list[tuple[str, object]]  # (Pyomo component, index): equal to a `Column`
    # per-class variable -> its solver column for each class (-1: not a column); derived
    # from `columns` when not given (base_arrays gives it, having computed it as arrays)
    class_index: Mapping[Var, IntArray] | None = field(default=None, compare=False,
                                                        repr=False)

    @cached_property
    def _class_columns(self) -> dict[Var, IntArray]:
        if self.class_index is not None:
            return dict(self.class_index)
        found: dict[Var, tuple[list[int], list[int]]] = {var: ([], []) for var in CLASS_VARS}
        for j, (name, idx) in enumerate(self.columns):
            col = column_of(name, idx)
            if col is not None and col.cls_index is not None and col.var in found:
                found[col.var][0].append(col.cls_index)
                found[col.var][1].append(j)
        size = 1 + max((max(ks) for ks, _ in found.values() if ks), default=-1)
        out: dict[Var, IntArray] = {}
        for var, (ks, js) in found.items():
            out[var] = np.full(size, -1, dtype=np.int64)
            out[var][np.asarray(ks, dtype=np.int64)] = js
        return out

    @cached_property
    def _scalar_columns(self) -> dict[Column, int]:
        taken = np.zeros(len(self.columns), dtype=bool)
        for idx in self._class_columns.values():
            taken[idx[idx >= 0]] = True
        out: dict[Column, int] = {}
        for j in np.flatnonzero(~taken).tolist():
            col = column_of(*self.columns[j])
            if col is not None and col.cls_index is None:
                out[col] = j
        return out

    def scalar_columns(self) -> Mapping[Column, int]:
        """The solver column of each scalar LP variable (the spread epigraphs), found among
        the columns `class_columns` does not hold, without a pass over all of them."""
        return MappingProxyType(self._scalar_columns)

    def class_columns(self) -> Mapping[Var, IntArray]:
        """For each per-class variable (x, y_m, y_s, q_p, q_d), the solver column of each
        class, -1 where the compiler left the variable out (fixed at 0): the array form of
        `column_index` that the per-class read-back and scaling index with."""
        return MappingProxyType(self._class_columns)

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

    def variable_values(self, x: np.ndarray, size: int) -> dict[Var, FloatArray]:
        """Per-class values of the LP variables (x, y_m, y_s, q_p, q_d), as arrays of
        `size`; 0 for entries that are not columns (fixed at 0)."""
        out: dict[Var, FloatArray] = {}
        values = np.asarray(x, dtype=np.float64)
        for var, idx in self.class_columns().items():
            col = np.zeros(size)
            present = np.flatnonzero(idx >= 0)
            col[present] = values[idx[present]]
            out[var] = col
        return out

    def describe(self, policy: Policy, failure: Failure) -> str:
        """`failure` in the policy's terms: its row or column named by class or SLO line,
        not by matrix name (`prefill_balance[0]`). Serves the main solve's and the
        conflict search's messages alike (their LPs share these rows and columns)."""
        if failure.row is not None and failure.row < len(self.rows):
            ref = self.rows[failure.row]
            component, index = ref.component, ref.index
        elif failure.column is not None and failure.column < len(self.columns):
            component, index = self.columns[failure.column]
        else:
            return failure.describe()
        if not isinstance(index, int):
            return failure.describe()
        where = failure.where
        col = column_of(component, index) if failure.column is not None else None
        if failure.row is not None and component == "slo" and index < len(policy.slos):
            slo = policy.slos[index]
            line = f" on line {slo.span.line}" if slo.span else ""
            where = f"the SLO '{slo.label}'{line}"
        elif component in ("violation", "violation_below") and index < len(policy.slos):
            where = f"the violation of SLO '{policy.slos[index].label}'"
        elif col is not None and col.cls_index is not None and index < len(policy.classes):
            where = f"{col.var.value} of class '{policy.classes[index].name}'"
        elif failure.row is not None and index < len(policy.classes):
            where = f"{component} of class '{policy.classes[index].name}'"
        return replace(failure, where=where).describe()


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
        row_names=IndexedNames(rows),
        col_names=IndexedNames(named),
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
    v = lp.vectors
    lam, theta = v.rate, v.theta
    admitted = np.minimum(lam, v.mu_p)  # requests/s: at most every GPU prefilling the class
    x = admitted / v.mu_p
    leaves = theta > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        size: dict[Var, FloatArray] = {
            Var.X: x,
            Var.Y_M: np.minimum((B - 1.0) * x, admitted / v.mu_m),
            Var.Y_S: np.minimum(B, admitted / v.mu_s),
            Var.Q_P: np.where(leaves, lam / theta, 0.0),
            Var.Q_D: np.where(leaves, admitted / theta, 0.0),
        }
    epigraph: dict[Var, float] = {}
    for hi, lo, var in SPREAD_VARS.values():  # hi, lo bound the class's share over weight
        epigraph[hi] = epigraph[lo] = float(np.max(size[var] / v.weight))
    out = np.full(len(compiled.columns), np.nan)
    for var, idx in compiled.class_columns().items():
        present = np.flatnonzero(idx >= 0)
        out[idx[present]] = size[var][present]
    for col, j in compiled.scalar_columns().items():  # the spread epigraphs, if any
        if col.var in epigraph:
            out[j] = epigraph[col.var]
    return out
