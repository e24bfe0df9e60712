"""The base fluid LP's arrays assembled with numpy, without building the Pyomo model.

`fluid_lp.build_fluid_lp` (Pyomo) stays the formulation that reads like the paper, and
`explain` prints it; but building it and walking it back into arrays costs about as much
as solving the LP at thousands of classes. This module writes the same arrays directly,
vectorised over classes: the same rows and columns in the same order, the same
coefficients to the last bit and the same names, so the solver sees exactly the LP Pyomo
would have handed it (tests/test_base_arrays.py compares the two on random policies).

The order is the one Pyomo's linear compiler produces: columns are numbered as they first
appear, in the objective (its nonzero terms, class by class) and then in the rows
(`one_prefill_per_gpu`, `mixed_decode_slots`, `solo_decode_slots`, `prefill_balance[i]`,
`decode_balance[i]`); variables fixed at 0 (the queues of a class without patience) and
zero coefficients are not columns or entries. `slo_arrays.py` appends a policy's SLO rows to
the same assembly (`base_assembly`), leaving room after the objective's terms for the
columns the objective's penalties add there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fluidgate.formulations.columns import Var
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.formulations.matrix import CompiledLP, IntArray, RowRef
from fluidgate.gcpause import gc_paused
from fluidgate.metrics import revenue_coefficient_vectors
from fluidgate.model import Objective, Policy
from fluidgate.solvers.base import CscMatrix, FloatArray, IndexedNames, MatrixLP

_ORDER = (Var.X, Var.Y_M, Var.Y_S, Var.Q_P, Var.Q_D)  # the order columns first appear in rows


def _objective(lp: FluidLP) -> tuple[list[Var], FloatArray]:
    """The objective's coefficients, one row per class, in the order
    `fluid_lp._objective_expr` writes each class's terms (which `Var` each column is)."""
    policy, v = lp.policy, lp.vectors
    if policy.objective is Objective.SERVED:
        return [Var.Y_M, Var.Y_S], np.column_stack([v.mu_m, v.mu_s])
    if policy.objective is Objective.THROUGHPUT:
        tokens = v.prompt + v.output
        return [Var.Y_M, Var.Y_S], np.column_stack([tokens * v.mu_m, tokens * v.mu_s])
    k = revenue_coefficient_vectors(policy.cluster, v, policy.pricing)
    return [Var.X, Var.Y_M, Var.Y_S], np.column_stack(k)


def base_lp(policy: Policy) -> tuple[FluidLP, CompiledLP]:
    """The base LP of a policy without SLOs, as `compile_matrix(build_fluid_lp(policy))`
    would give it, without building the Pyomo model (`FluidLP.model` is None)."""
    if policy.slos:
        raise ValueError("base_lp is for policies without SLOs; build the Pyomo model")
    with gc_paused():  # a key per column, a reference per row: no cycles
        return base_assembly(policy).finish()


@dataclass
class Assembly:
    """An LP being assembled as arrays in the compiler's order: columns and rows are only
    ever appended, each column with its objective coefficient and bounds."""

    lp: FluidLP
    index: dict[Var, IntArray]  # the class columns: see `CompiledLP.class_index`
    columns: list[tuple[str, object]]
    refs: list[RowRef]
    n_cols: int
    c: list[FloatArray] = field(default_factory=list)  # in column order, like the bounds
    col_lower: list[FloatArray] = field(default_factory=list)
    col_upper: list[FloatArray] = field(default_factory=list)
    rows: list[IntArray] = field(default_factory=list)  # the entries' triplets
    cols: list[IntArray] = field(default_factory=list)
    vals: list[FloatArray] = field(default_factory=list)
    row_lower: list[FloatArray] = field(default_factory=list)
    row_upper: list[FloatArray] = field(default_factory=list)

    def add_column(self, name: tuple[str, object], lower: float) -> int:
        """Append one column with no objective term and no upper bound; its number."""
        self.columns.append(name)
        self.c.append(np.zeros(1))
        self.col_lower.append(np.array([lower]))
        self.col_upper.append(np.array([np.inf]))
        self.n_cols += 1
        return self.n_cols - 1

    def add_rows(self, refs: Sequence[RowRef], rows: IntArray, cols: IntArray,
                 vals: FloatArray, lower: FloatArray, upper: FloatArray) -> None:
        """Append rows; `rows` numbers the entries' rows from 0 within `refs`."""
        self.rows.append(rows + len(self.refs))
        self.cols.append(cols)
        self.vals.append(vals)
        self.row_lower.append(lower)
        self.row_upper.append(upper)
        self.refs.extend(refs)

    def finish(self) -> tuple[FluidLP, CompiledLP]:
        A = CscMatrix.from_triplets(len(self.refs), self.n_cols, np.concatenate(self.rows),
                                    np.concatenate(self.cols), np.concatenate(self.vals))
        matrix = MatrixLP(
            c=np.concatenate(self.c),
            offset=0.0,
            A=A,
            row_lower=np.concatenate(self.row_lower),
            row_upper=np.concatenate(self.row_upper),
            col_lower=np.concatenate(self.col_lower),
            col_upper=np.concatenate(self.col_upper),
            row_names=IndexedNames(self.refs),
            col_names=IndexedNames(self.columns),
        )
        return self.lp, CompiledLP(matrix, self.refs, self.columns, class_index=self.index)


def base_assembly(policy: Policy, reserved: Sequence[tuple[str, object]] = (),
                  reserved_c: FloatArray | None = None) -> Assembly:
    """The base LP's rows and columns; `reserved` columns (non-negative, objective
    coefficients `reserved_c`) are numbered right after the objective's class terms, where
    Pyomo's compiler meets the soft-SLO penalties that follow them in the objective."""
    n = len(policy.classes)
    lp = FluidLP(policy=policy, model=None)
    v = lp.vectors
    B = float(policy.cluster.max_batch)
    mu_p, mu_m, mu_s, theta, lam = v.mu_p, v.mu_m, v.mu_s, v.theta, v.rate
    leaves = theta != 0.0  # the queues of a class nobody leaves are fixed at 0: no columns

    # column numbers in order of first appearance (-1: not a column): first the objective's
    # nonzero terms, class by class, then the reserved ones, then what the rows add,
    # variable by variable
    index: dict[Var, IntArray] = {var: np.full(n, -1, dtype=np.int64) for var in _ORDER}
    obj_vars, obj = _objective(lp)
    nonzero = obj != 0.0
    order = np.flatnonzero(nonzero.ravel())  # row-major: class by class, then term by term
    n_obj = order.size
    cls_of, term_of = np.divmod(order, len(obj_vars))
    for t, var in enumerate(obj_vars):
        mine = term_of == t
        index[var][cls_of[mine]] = np.flatnonzero(mine)
    obj_vals = obj.ravel()[order]
    n_cols = n_obj + len(reserved)
    for var in _ORDER:
        new = index[var] < 0 if var in (Var.X, Var.Y_M, Var.Y_S) else (index[var] < 0) & leaves
        count = int(new.sum())
        index[var][new] = np.arange(n_cols, n_cols + count)
        n_cols = n_cols + count
    X, YM, YS, QP, QD = (index[var] for var in _ORDER)
    ks = np.arange(n, dtype=np.int64)
    PB, DB = 3 + ks, 3 + n + ks
    ones = np.ones(n)
    rows = [np.zeros(n, np.int64), np.ones(n, np.int64), np.full(n, 2, np.int64), PB, DB,
            np.ones(n, np.int64), DB, np.full(n, 2, np.int64), DB, PB[leaves], DB[leaves]]
    cols = [X, X, X, X, X, YM, YM, YS, YS, QP[leaves], QD[leaves]]
    vals = [ones, -(B - 1.0) * ones, B * ones, mu_p, mu_p, ones, -mu_m, ones, -mu_s,
            theta[leaves], -theta[leaves]]
    c = np.zeros(n_cols)
    c[:n_obj] = obj_vals
    if reserved_c is not None:
        c[n_obj:n_obj + len(reserved)] = reserved_c

    var_of = np.full(n_cols, -1, dtype=np.int64)  # position in _ORDER (-1: reserved)
    cls_at = np.zeros(n_cols, dtype=np.int64)
    for code, var in enumerate(_ORDER):
        present = np.flatnonzero(index[var] >= 0)
        var_of[index[var][present]] = code
        cls_at[index[var][present]] = present
    names = [var.value for var in _ORDER]  # the reserved columns are named just below
    columns: list[tuple[str, object]] = list(zip([names[k] for k in var_of.tolist()],
                                                 cls_at.tolist(), strict=True))
    columns[n_obj:n_obj + len(reserved)] = reserved
    assembly = Assembly(lp, index, columns, [], n_cols, [c], [np.zeros(n_cols)],
                        [np.full(n_cols, np.inf)])
    refs = [RowRef("one_prefill_per_gpu", None), RowRef("mixed_decode_slots", None),
            RowRef("solo_decode_slots", None)]
    refs += [RowRef("prefill_balance", i) for i in range(n)]
    refs += [RowRef("decode_balance", i) for i in range(n)]
    assembly.add_rows(refs, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                      np.concatenate([np.full(3, -np.inf), lam, np.zeros(n)]),
                      np.concatenate([np.array([1.0, 0.0, B]), lam, np.zeros(n)]))
    return assembly
