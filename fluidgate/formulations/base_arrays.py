"""The base fluid LP's arrays assembled with numpy, for policies without SLOs.

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
zero coefficients are not columns or entries.
"""

from __future__ import annotations

import numpy as np

from fluidgate.formulations.columns import Var
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.formulations.matrix import CompiledLP, RowRef
from fluidgate.metrics import revenue_coefficients
from fluidgate.model import Objective, Policy, service_rates
from fluidgate.solvers.base import CscMatrix, MatrixLP


def _objective(policy: Policy, lp: FluidLP) -> tuple[list[tuple[Var, int]], list[float]]:
    """The objective's nonzero terms in the order `fluid_lp._objective_expr` writes them."""
    cols: list[tuple[Var, int]] = []
    vals: list[float] = []
    terms: tuple[tuple[Var, float], ...]
    for i, (cls, r) in enumerate(zip(policy.classes, lp.rates, strict=True)):
        if policy.objective is Objective.SERVED:
            terms = ((Var.Y_M, r.mu_m), (Var.Y_S, r.mu_s))
        elif policy.objective is Objective.THROUGHPUT:
            tokens = cls.prompt + cls.output
            terms = ((Var.Y_M, tokens * r.mu_m), (Var.Y_S, tokens * r.mu_s))
        else:
            k = revenue_coefficients(policy.cluster, cls, policy.pricing)
            terms = ((Var.X, k.x), (Var.Y_M, k.y_m), (Var.Y_S, k.y_s))
        for var, coef in terms:
            if coef:
                cols.append((var, i))
                vals.append(float(coef))
    return cols, vals


def base_lp(policy: Policy) -> tuple[FluidLP, CompiledLP]:
    """The base LP of a policy without SLOs, as `compile_matrix(build_fluid_lp(policy))`
    would give it, without building the Pyomo model (`FluidLP.model` is None)."""
    if policy.slos:
        raise ValueError("base_lp is for policies without SLOs; build the Pyomo model")
    n = len(policy.classes)
    rates = [service_rates(policy.cluster, cls) for cls in policy.classes]
    lp = FluidLP(policy=policy, model=None, rates=rates)
    B = float(policy.cluster.max_batch)
    mu_p = np.array([r.mu_p for r in rates], dtype=np.float64)
    mu_m = np.array([r.mu_m for r in rates], dtype=np.float64)
    mu_s = np.array([r.mu_s for r in rates], dtype=np.float64)
    theta = np.array([c.theta for c in policy.classes], dtype=np.float64)
    lam = np.array([c.rate for c in policy.classes], dtype=np.float64)
    leaves = theta != 0.0  # the queues of a class nobody leaves are fixed at 0: no columns

    # column numbers in order of first appearance (-1: not a column)
    index = {var: np.full(n, -1, dtype=np.int64) for var in (Var.X, Var.Y_M, Var.Y_S,
                                                              Var.Q_P, Var.Q_D)}
    obj_cols, obj_vals = _objective(policy, lp)
    for j, (var, i) in enumerate(obj_cols):
        index[var][i] = j
    n_cols = len(obj_cols)
    for var, present in ((Var.X, None), (Var.Y_M, None), (Var.Y_S, None),
                         (Var.Q_P, leaves), (Var.Q_D, leaves)):
        new = index[var] < 0 if present is None else (index[var] < 0) & present
        count = int(new.sum())
        index[var][new] = np.arange(n_cols, n_cols + count)
        n_cols = n_cols + count

    X, YM, YS, QP, QD = (index[v] for v in (Var.X, Var.Y_M, Var.Y_S, Var.Q_P, Var.Q_D))
    ks = np.arange(n, dtype=np.int64)
    PB, DB = 3 + ks, 3 + n + ks
    ones = np.ones(n)
    rows = [np.zeros(n, np.int64), np.ones(n, np.int64), np.full(n, 2, np.int64), PB, DB,
            np.ones(n, np.int64), DB, np.full(n, 2, np.int64), DB, PB[leaves], DB[leaves]]
    cols = [X, X, X, X, X, YM, YM, YS, YS, QP[leaves], QD[leaves]]
    vals = [ones, -(B - 1.0) * ones, B * ones, mu_p, mu_p, ones, -mu_m, ones, -mu_s,
            theta[leaves], -theta[leaves]]
    A = CscMatrix.from_triplets(3 + 2 * n, n_cols, np.concatenate(rows), np.concatenate(cols),
                                np.concatenate(vals))
    c = np.zeros(n_cols)
    c[: len(obj_vals)] = obj_vals

    columns: list[tuple[str, object]] = [("", None)] * n_cols
    for var, idx in index.items():
        name = var.value
        for k in np.flatnonzero(idx >= 0).tolist():
            columns[int(idx[k])] = (name, k)
    refs = [RowRef("one_prefill_per_gpu", None), RowRef("mixed_decode_slots", None),
            RowRef("solo_decode_slots", None)]
    refs += [RowRef("prefill_balance", i) for i in range(n)]
    refs += [RowRef("decode_balance", i) for i in range(n)]
    matrix = MatrixLP(
        c=c,
        offset=0.0,
        A=A,
        row_lower=np.concatenate([np.full(3, -np.inf), lam, np.zeros(n)]),
        row_upper=np.concatenate([np.array([1.0, 0.0, B]), lam, np.zeros(n)]),
        col_lower=np.zeros(n_cols),
        col_upper=np.full(n_cols, np.inf),
        row_names=[r.component if r.index is None else f"{r.component}[{r.index}]"
                   for r in refs],
        col_names=[f"{name}[{i}]" for name, i in columns],
    )
    return lp, CompiledLP(matrix, refs, columns)
