"""How far one SLO must move for the rest of the policy to be feasible: an elastic re-solve.

A compiled SLO row loosened by `s` (in the constraint's own units) reads
`N(v) − s·D(v) ≤ 0`, with `N(v) = a·v − r` the row at `s = 0` and `D(v) = −∂row/∂s ≥ 0`
(`LinearRow.slack_constant` and `slack_gradient`). With the row switched off and everything
else held, the feasible `s` form a half-line `[s*, ∞)`, and

    s* = min N(v) / D(v)   over the plans v the other rows allow.

For most SLOs (`ttft`, `abandonment`, `served`, …) `D` is a constant, so `s*` is one LP:
minimise the row's activity, the classic elastic re-solve with the slack folded into the
objective. A `tpot` bound divides by the decode token rate, so `D` depends on the plan and
the ratio is minimised by Dinkelbach's method, a handful of LPs of the same shape
(minimise `N − s_k·D`, then `s_{k+1} = N/D` at that optimum; it stops when the minimum is 0).
Equality rows take whichever end of the feasible interval of `s` is nearer 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fluidgate.attempts import verified_trial
from fluidgate.formulations.columns import Column
from fluidgate.formulations.matrix import CompiledLP
from fluidgate.formulations.slo_compile import LinearRow
from fluidgate.solvers.base import FloatArray, SolveOptions, Solver, TerminationStatus
from fluidgate.solvers.scaling import Scaling

MAX_DINKELBACH_STEPS = 60
_REL = 1e-10  # relative size of N − s·D below which the ratio counts as minimal


@dataclasses.dataclass(frozen=True)
class _Affine:
    """`coef·v + const` over the matrix columns."""

    coef: FloatArray
    const: float

    def at(self, x: FloatArray) -> float:
        return float(self.coef @ x) + self.const


def _affine(compiled: CompiledLP, terms: dict[Column, float], const: float) -> _Affine:
    """A linear form over LP columns as a column vector; variables that are not columns are
    fixed at 0 and drop out."""
    index = compiled.column_index()
    coef = np.zeros(len(compiled.columns))
    for col, value in terms.items():
        j = index.get(col)
        if j is not None:
            coef[j] += value
    return _Affine(coef, const)


class ElasticRow:
    """Minimises forms over the plans that rows left on by `off` allow (one LP each).

    Each optimum is verified (optimality included: the bound printed is that optimum) and
    each "no plan" verdict certified; an answer that cannot be raises `TrialUnverified`."""

    def __init__(self, compiled: CompiledLP, off: np.ndarray, backend: Solver,
                 scaling: Scaling, options: SolveOptions, tick: Callable[[], None]) -> None:
        lp = compiled.matrix
        self._lp = dataclasses.replace(
            lp, offset=0.0,
            row_lower=np.where(off, -np.inf, lp.row_lower),
            row_upper=np.where(off, np.inf, lp.row_upper))
        self._backend = backend
        self._scaling = scaling
        self._options = options
        self._tick = tick

    def argmin(self, f: _Affine) -> FloatArray | None:
        """A plan minimising `f`, or None when the other rows allow no plan at all."""
        lp = dataclasses.replace(self._lp, c=-f.coef)
        trial = verified_trial(lambda o: self._backend.solve(lp, o), lp, self._scaling,
                               self._options, optimum=True)
        self._tick()
        if trial.result.status is not TerminationStatus.OPTIMAL or trial.result.x is None:
            return None
        return trial.result.x

    def min_ratio(self, n: _Affine, d: _Affine) -> float | None:
        """`min N/D` over the plans with `D > 0` (None if there are none)."""
        if not d.coef.any():
            if d.const <= 0.0:
                return None
            x = self.argmin(n)
            return None if x is None else n.at(x) / d.const
        x = self.argmin(_Affine(-d.coef, -d.const))  # a plan where D is as large as it gets
        if x is None or d.at(x) <= 0.0:
            return None
        s = n.at(x) / d.at(x)
        for _ in range(MAX_DINKELBACH_STEPS):
            x = self.argmin(_Affine(n.coef - s * d.coef, n.const - s * d.const))
            if x is None:
                return None
            gap = n.at(x) - s * d.at(x)
            scale = abs(n.at(x)) + abs(s * d.at(x)) + 1e-300
            if gap >= -_REL * scale or d.at(x) <= 0.0:
                return s
            s = n.at(x) / d.at(x)
        return s


def loosening(row: LinearRow, compiled: CompiledLP, elastic: ElasticRow) -> float | None:
    """`s*`: the least loosening of `row` (its own units) at which the held rows are
    feasible; for an equality, the feasible shift nearest 0. None when no shift helps."""
    n = _affine(compiled, row.coeffs, -row.rhs)
    grad = row.slack_gradient
    d = _affine(compiled, {k: -v for k, v in grad.items()}, -row.slack_constant)
    low = elastic.min_ratio(n, d)
    if low is None:
        return None
    if not row.equality or low > 0.0:
        return low
    high = elastic.min_ratio(_Affine(-n.coef, -n.const), d)
    if high is None:
        return None
    high = -high
    return high if high < 0.0 else None
