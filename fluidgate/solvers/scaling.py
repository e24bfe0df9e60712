"""Solve the LP in well-scaled units and map the answer back exactly.

Solvers drop matrix entries below a cut-off (HiGHS: 1e-9) and judge feasibility and
optimality with absolute tolerances (1e-7). A policy in seconds, tokens and money can put a
service rate at 1e-10 and an arrival rate at 1e-9, where both rules silently change the
model. So each column is measured in units of its *magnitude* (the largest value the
variable can physically take, e.g. a class's prefill share cannot exceed λ/μ_p), each row in
units of its largest possible term, and the objective in units of its largest possible
term; every coefficient that matters then sits near 1.

All factors are powers of two, so scaling and unscaling are exact in floating point: on a
policy that needs no scaling, the numbers a solver sees differ from the unscaled ones only
in their exponents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from fluidgate.solvers.base import (
    Availability,
    Capabilities,
    CscMatrix,
    FloatArray,
    MatrixLP,
    SolveOptions,
    Solver,
    SolverResult,
)

_MAX_EXPONENT = 900  # keeps every factor and its inverse far from overflow


def power_of_two(v: FloatArray) -> FloatArray:
    """The power of two nearest to each positive entry (1 for zero or non-finite ones)."""
    out = np.ones_like(v)
    ok = np.isfinite(v) & (v > 0)
    exp = np.clip(np.rint(np.log2(v[ok])), -_MAX_EXPONENT, _MAX_EXPONENT)
    out[ok] = np.ldexp(1.0, exp.astype(np.int64))
    return out


def _finite_abs(v: FloatArray) -> FloatArray:
    return np.where(np.isfinite(v), np.abs(v), 0.0)


def _row_of_entries(A: CscMatrix) -> tuple[np.ndarray, np.ndarray]:
    cols = np.repeat(np.arange(A.shape[1]), np.diff(A.indptr))
    return A.indices, cols


@dataclass(frozen=True)
class Scaling:
    """`x = col · x̃`, scaled row r = `row[r]` × row r, scaled objective = `obj` × objective.

    `row_size` is each row's largest possible term, in the LP's own units: what a residual
    is measured against when the plan is verified.
    """

    col: FloatArray
    row: FloatArray
    obj: float
    row_size: FloatArray

    @classmethod
    def identity(cls, lp: MatrixLP) -> Scaling:
        n_rows, n_cols = lp.shape
        return cls(np.ones(n_cols), np.ones(n_rows), 1.0, np.ones(n_rows))

    @classmethod
    def from_magnitudes(cls, lp: MatrixLP, magnitude: FloatArray) -> Scaling:
        """Factors from column magnitudes; NaN entries are filled from the rows they sit in
        (a soft SLO's violation is about as large as the row it relaxes)."""
        A = lp.A
        n_rows, n_cols = lp.shape
        rows, cols = _row_of_entries(A)
        mag = np.asarray(magnitude, dtype=np.float64).copy()
        known = np.isfinite(mag) & (mag > 0)
        if not known.all():
            partial = np.maximum(_finite_abs(lp.row_lower), _finite_abs(lp.row_upper))
            np.maximum.at(partial, rows, np.abs(A.data) * np.where(known[cols], mag[cols], 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                est = partial[rows] / np.abs(A.data)
            guess = np.zeros(n_cols)
            np.maximum.at(guess, cols, np.where(np.isfinite(est), est, 0.0))
            mag = np.where(known, mag, np.where(guess > 0, guess, 1.0))
        size = np.zeros(n_rows)
        np.maximum.at(size, rows, np.abs(A.data) * mag[cols])
        size = np.where(size > 0, size, 1.0)
        col = power_of_two(mag)
        row = 1.0 / power_of_two(size)
        # the objective's unit: its largest term among the columns whose size is known
        # (a soft SLO's violation is mostly 0 at the optimum, and a large penalty on its
        # guessed size would shrink every revenue coefficient below the solver's tolerance)
        obj_terms = np.abs(lp.c) * np.where(known, mag, 0.0)
        if not obj_terms.any():
            obj_terms = np.abs(lp.c) * mag
        top = float(obj_terms.max()) if obj_terms.size else 0.0
        obj = float(1.0 / power_of_two(np.array([top]))[0])
        return cls(col, row, obj, size)

    def apply(self, lp: MatrixLP) -> MatrixLP:
        A = lp.A
        rows, cols = _row_of_entries(A)
        data = A.data * self.row[rows] * self.col[cols]
        return dataclasses.replace(
            lp,
            c=lp.c * self.col * self.obj,
            offset=lp.offset * self.obj,
            A=CscMatrix(A.shape, A.indptr, A.indices, data),
            row_lower=lp.row_lower * self.row,
            row_upper=lp.row_upper * self.row,
            col_lower=lp.col_lower / self.col,
            col_upper=lp.col_upper / self.col,
        )

    def unscale(self, result: SolverResult) -> SolverResult:
        """The result in the LP's own units: values, duals, objective and any certificate."""
        return dataclasses.replace(
            result,
            objective=None if result.objective is None else result.objective / self.obj,
            x=None if result.x is None else result.x * self.col,
            row_duals=None if result.row_duals is None
            else result.row_duals * self.row / self.obj,
            farkas=None if result.farkas is None else result.farkas * self.row,
        )


class ScaledSolver:
    """A backend that solves every LP it is given in the units of one `Scaling`.

    Infeasibility diagnosis re-solves the same matrix with rows switched off; wrapping the
    backend gives those trial solves the same scaling without their knowing.
    """

    def __init__(self, inner: Solver, scaling: Scaling) -> None:
        self.inner = inner
        self.scaling = scaling
        self.name: str = inner.name
        self.capabilities: Capabilities = inner.capabilities

    def available(self) -> Availability:
        return self.inner.available()

    def solve(self, lp: MatrixLP, options: SolveOptions) -> SolverResult:
        return self.scaling.unscale(self.inner.solve(self.scaling.apply(lp), options))
