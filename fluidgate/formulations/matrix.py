"""Compile a Pyomo `FluidLP` to the arrays solvers take, keeping the way back.

Pyomo's `LinearStandardFormCompiler` does the translation (SOLVER-NOTES.md: the fastest route
that keeps Pyomo as the readable model). `rows[r]` names the Pyomo constraint and index
behind row r, so duals and infeasible subsets map back to policy lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.solvers.base import MatrixLP


@dataclass(frozen=True)
class RowRef:
    """Which constraint a row came from; `sign` is +1 for `≤`/`=` rows, −1 for `≥`."""

    component: str
    index: object
    sign: int


@dataclass(frozen=True)
class CompiledLP:
    matrix: MatrixLP
    rows: list[RowRef]
    columns: list[tuple[str, object]]

    def column_values(self, x: np.ndarray, name: str, size: int) -> list[float]:
        """Values of indexed variable `name`, 0 for entries the compiler eliminated (fixed)."""
        out = [0.0] * size
        for j, (var, idx) in enumerate(self.columns):
            if var == name and isinstance(idx, int):
                out[idx] = float(x[j])
        return out


def compile_matrix(lp: FluidLP) -> CompiledLP:
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    info = LinearStandardFormCompiler().write(lp.model, mixed_form=True, set_sense=None)
    n_rows = len(info.rows)
    rhs = np.asarray(info.rhs, dtype=np.float64)
    lower = np.full(n_rows, -np.inf)
    upper = np.full(n_rows, np.inf)
    rows: list[RowRef] = []
    for r, entry in enumerate(info.rows):
        con = entry.constraint
        bt = entry.bound_type
        if bt == 1:
            upper[r] = rhs[r]
        elif bt == -1:
            lower[r] = rhs[r]
        else:
            lower[r] = upper[r] = rhs[r]
        rows.append(RowRef(con.parent_component().name, con.index(), -1 if bt == -1 else 1))
    cols = info.columns
    col_lower = np.array([-np.inf if v.lb is None else v.lb for v in cols], dtype=np.float64)
    col_upper = np.array([np.inf if v.ub is None else v.ub for v in cols], dtype=np.float64)
    c = np.asarray(info.c.toarray()[0], dtype=np.float64) if info.c.shape[0] else np.zeros(
        len(cols))
    offset = float(info.c_offset[0]) if len(info.c_offset) else 0.0
    columns = [(v.parent_component().name, v.index()) for v in cols]
    matrix = MatrixLP(
        c=c,
        offset=offset,
        A=info.A,
        row_lower=lower,
        row_upper=upper,
        col_lower=col_lower,
        col_upper=col_upper,
        row_names=[f"{r.component}[{r.index}]" if r.index is not None else r.component
                   for r in rows],
        col_names=[f"{n}[{i}]" if i is not None else n for n, i in columns],
    )
    return CompiledLP(matrix, rows, columns)
