"""A policy's LP with its SLO rows, assembled as arrays without building the Pyomo model.

`slo.add_slos` adds the SLO rows to the Pyomo model, which `explain` prints; building that
model and walking it back into arrays was most of a 1,000-class solve with one SLO per class
(docs/performance.md). This module appends the same compiled rows (`slo_compile`) to the
base LP's numpy assembly (`base_arrays.base_assembly`), in the order, with the coefficients,
bounds and names that `compile_matrix(lp)` gives after `add_slos(lp)`, so the solver, the
conflict diagnosis and the read-back see exactly the same LP (tests/test_slo_arrays.py
compares the two bit for bit on random policies).

Pyomo's order, reproduced here: the objective's columns first (the class terms, then each
soft SLO's `violation[k]` and, for `==`, `violation_below[k]`, where its penalty is not
0), then the base rows; then, for each `spread` pool in sorted order, the rows
`hi_<pool>_bound[i]` (`x_i/w_i − hi ≤ 0`, which first meets `hi`) and `lo_<pool>_bound[i]`
(`lo − x_i/w_i ≤ 0`); then `slo[k]` for each SLO that is not trivial, its terms in the
compiled row's order, less zero coefficients and the queues fixed at 0, then `−violation[k]`
and `+violation_below[k]`. A column is numbered where it first appears.
"""

from __future__ import annotations

import numpy as np

from fluidgate.formulations.base_arrays import Assembly, base_assembly
from fluidgate.formulations.columns import SPREAD_VARS, Column
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.formulations.matrix import CompiledLP, IntArray, RowRef
from fluidgate.formulations.slo import compile_slos
from fluidgate.formulations.slo_compile import LinearRow
from fluidgate.gcpause import gc_paused
from fluidgate.model import Policy


def slo_lp(policy: Policy) -> tuple[FluidLP, CompiledLP]:
    """The LP of a policy with SLOs, as `compile_matrix` gives it after `build_fluid_lp`
    and `add_slos` (`FluidLP.model` is None); raises `PolicyError` if an SLO is not
    linear."""
    rows = compile_slos(policy)
    with gc_paused():  # a key per column, a reference per row: no cycles
        penalised: list[tuple[str, object]] = []  # in the objective's order
        prices: list[float] = []
        for k, row in enumerate(rows):
            if row.slo.soft and row.slo.penalty != 0.0:  # Pyomo drops 0 · v
                names = ["violation", "violation_below"] if row.equality else ["violation"]
                penalised += [(name, k) for name in names]
                prices += [-row.slo.penalty] * len(names)
        assembly = base_assembly(policy, penalised, np.asarray(prices, dtype=np.float64))
        first = assembly.columns.index(penalised[0]) if penalised else 0
        violations = {name: first + j for j, name in enumerate(penalised)}
        scalars = _spread_rows(assembly, rows)
        _slo_rows(assembly, rows, scalars, violations)
        assembly.lp.rows = rows
        return assembly.finish()


def _spread_rows(assembly: Assembly, rows: list[LinearRow]) -> dict[Column, int]:
    """The epigraph rows of each `spread` pool the SLOs use; the columns of hi and lo."""
    weight = assembly.lp.vectors.weight
    n = weight.size
    ks = np.arange(n, dtype=np.int64)
    ones = np.ones(n)
    out: dict[Column, int] = {}
    for pool in sorted({p for r in rows for p in r.uses_spread}):
        hi, lo, var = SPREAD_VARS[pool]
        share = 1.0 / weight  # Pyomo writes `v / w` as the term (1/w)·v
        mine = assembly.index[var]
        for bound, sign in ((hi, 1.0), (lo, -1.0)):
            j = out[Column(bound)] = assembly.add_column((bound.value, None), -np.inf)
            cols = np.concatenate([mine, np.full(n, j)]) if sign > 0 else np.concatenate(
                [np.full(n, j), mine])
            vals = (np.concatenate([share, -ones]) if sign > 0
                    else np.concatenate([ones, -share]))
            assembly.add_rows([RowRef(f"{bound.value}_bound", i) for i in range(n)],
                              np.concatenate([ks, ks]), cols, vals,
                              np.full(n, -np.inf), np.zeros(n))
    return out


def _slo_rows(assembly: Assembly, rows: list[LinearRow], scalars: dict[Column, int],
              violations: dict[tuple[str, object], int]) -> None:
    """`slo[k]` for each SLO that is not trivial (it holds whatever the plan)."""
    index = assembly.index
    refs: list[RowRef] = []
    entry_rows: list[int] = []
    entry_cols: list[int] = []
    entry_vals: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    for k, row in enumerate(rows):
        if row.trivial:
            continue
        r = len(refs)
        for col, coef in row.coeffs.items():
            if coef == 0.0:
                continue
            j = scalars[col] if col.cls_index is None else int(index[col.var][col.cls_index])
            if j < 0:  # a queue fixed at 0: a constant 0, not an entry
                continue
            entry_rows.append(r)
            entry_cols.append(j)
            entry_vals.append(coef)
        if row.slo.soft:
            slack = [("violation", k, -1.0)]
            if row.equality:
                slack.append(("violation_below", k, 1.0))
            for name, idx, coef in slack:
                if (name, idx) not in violations:  # penalty 0: not in the objective,
                    violations[(name, idx)] = assembly.add_column((name, idx), 0.0)  # met here
                entry_rows.append(r)
                entry_cols.append(violations[(name, idx)])
                entry_vals.append(coef)
        refs.append(RowRef("slo", k))
        lower.append(row.rhs if row.equality else -np.inf)
        upper.append(row.rhs)
    assembly.add_rows(refs, _ints(entry_rows), _ints(entry_cols),
                      np.asarray(entry_vals, dtype=np.float64),
                      np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))


def _ints(values: list[int]) -> IntArray:
    return np.asarray(values, dtype=np.int64)
