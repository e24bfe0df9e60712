"""Check a solver's answer in the policy's own units before anyone acts on it.

A solver works in its own (scaled) units with absolute tolerances, drops tiny matrix entries
and may stop early; its word "optimal" or "infeasible" is a claim, not a fact. This module
turns the claim into a checked statement, using only the LP as fluidgate built it:

- a plan is *feasible* when every row holds and every variable is within its bounds;
- it is *optimal* when the solver's duals prove it (dual signs right, duality gap closed);
- a policy is *infeasible* when a Farkas certificate (row multipliers) proves no plan exists;
- the plan is *physical*: per class served ≤ admitted ≤ arrivals, Σx ≤ 1, and the decode
  slots of mixed and solo GPUs are not overfilled.

Each error is measured relative to the size of what it belongs to, so the checks mean the
same in any units. Every tolerance is stated once, in `Tolerances`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from fluidgate.solvers.base import FloatArray, MatrixLP

if TYPE_CHECKING:
    from fluidgate.model import Policy
    from fluidgate.solution import ClassSolution


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Relative tolerances of every check (documented in docs/solvers.md).

    `feasibility`: a row's residual over the row's size (the largest of its bound, the sum
    of its terms' magnitudes at the plan, and its largest possible term); a bound violation
    over the variable's size; a physical invariant over the class's arrival rate (or the
    GPU's slot count). `optimality`: the duality gap, a wrong-signed dual's reach and the
    objective's recomputation, each over the objective's size. `certificate`: the margin by
    which a Farkas certificate must prove infeasibility, over the certificate's size.
    """

    feasibility: float = 1e-6
    optimality: float = 1e-6
    certificate: float = 1e-9


TOLERANCES = Tolerances()
_TINY = float(np.finfo(np.float64).tiny)


class Check(StrEnum):
    ROW = "row"
    BOUND = "bound"
    OBJECTIVE = "objective"
    DUAL = "dual"
    GAP = "gap"
    PLAN = "plan"
    CERTIFICATE = "certificate"


@dataclass(frozen=True, slots=True)
class Failure:
    check: Check
    where: str  # a row, a column or a class
    error: float  # relative, comparable with the tolerance of its check
    detail: str = ""
    row: int | None = None  # the matrix row it is about, if any (for naming it in policy terms)
    column: int | None = None  # the matrix column, likewise

    def describe(self) -> str:
        what = f"{self.where}: {self.detail}" if self.detail else self.where
        return f"{what} ({self.check.value} check, relative error {self.error:.3g})"


@dataclass(frozen=True)
class Verification:
    """What the checks found; `x` is the verified plan (the solver's, moved onto any bound
    it overstepped within tolerance)."""

    failures: tuple[Failure, ...] = ()
    row_residual: float = 0.0  # largest relative row residual
    bound_violation: float = 0.0  # largest relative bound violation
    dual_infeasibility: float = 0.0
    gap: float = 0.0  # relative duality gap (or certificate margin for infeasibility)
    x: FloatArray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failures

    def with_failures(self, more: Sequence[Failure]) -> Verification:
        return Verification(self.failures + tuple(more), self.row_residual,
                            self.bound_violation, self.dual_infeasibility, self.gap, self.x)

    def worst(self, limit: int = 3) -> list[Failure]:
        return sorted(self.failures, key=lambda f: -f.error)[:limit]


def _name(names: Sequence[str], i: int, kind: str) -> str:
    return names[i] if i < len(names) else f"{kind} {i}"


def _sizes(size: FloatArray | None, n: int) -> FloatArray:
    return np.ones(n) if size is None else np.asarray(size, dtype=np.float64)


def _entry_columns(lp: MatrixLP) -> np.ndarray:
    A = lp.A
    return np.repeat(np.arange(A.shape[1]), np.diff(A.indptr))


def _matvec(lp: MatrixLP, x: FloatArray, absolute: bool = False) -> FloatArray:
    """A·x (or Σ_j |a_rj·x_j| per row, the size of each row's terms at x)."""
    A = lp.A
    terms = A.data * x[_entry_columns(lp)]
    out = np.bincount(A.indices, weights=np.abs(terms) if absolute else terms,
                      minlength=A.shape[0])
    return out.astype(np.float64, copy=False)


def _rmatvec(lp: MatrixLP, y: FloatArray) -> FloatArray:
    A = lp.A
    out = np.bincount(_entry_columns(lp), weights=A.data * y[A.indices], minlength=A.shape[1])
    return out.astype(np.float64, copy=False)


def _worst(failures: list[Failure], check: Check, err: FloatArray, tol: float,
           names: Sequence[str], kind: str, detail: str) -> float:
    bad = np.flatnonzero(err > tol)
    for i in bad[np.argsort(-err[bad])][:5]:
        at = {"row": int(i)} if kind == "row" else {"column": int(i)}
        failures.append(Failure(check, _name(names, int(i), kind), float(err[i]), detail, **at))
    if bad.size > 5:
        failures.append(Failure(check, f"{bad.size - 5} more {kind}s", float(tol), detail))
    return float(err.max()) if err.size else 0.0


def verify_solution(
    lp: MatrixLP,
    x: FloatArray,
    row_duals: FloatArray | None,
    objective: float | None,
    *,
    col_size: FloatArray | None = None,
    row_size: FloatArray | None = None,
    tol: Tolerances = TOLERANCES,
) -> Verification:
    """Check a claimed optimum of `lp` (maximisation, duals as ∂objective/∂bound).

    `col_size` and `row_size` are the largest values each variable and each row's terms can
    take (from the policy, see `Scaling`); without them, 1 is assumed.
    """
    n_rows, n_cols = lp.shape
    cs, rs = _sizes(col_size, n_cols), _sizes(row_size, n_rows)
    failures: list[Failure] = []
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (n_cols,) or not np.all(np.isfinite(x)):
        return Verification((Failure(Check.BOUND, "plan", np.inf, "missing or non-finite "
                                     "values"),), np.inf, np.inf, np.inf, np.inf)
    lo, up = lp.col_lower, lp.col_upper
    over = np.maximum(np.maximum(lo - x, x - up), 0.0)
    bsize = np.maximum(cs, np.maximum(np.where(np.isfinite(lo), np.abs(lo), 0.0),
                                      np.where(np.isfinite(up), np.abs(up), 0.0)))
    bound_err = over / bsize
    bound_max = _worst(failures, Check.BOUND, bound_err, tol.feasibility, lp.col_names,
                       "column", "outside its bounds")
    x = np.clip(x, lo, up)

    act = _matvec(lp, x)
    terms = _matvec(lp, x, absolute=True)
    low_gap, high_gap = lp.row_lower - act, act - lp.row_upper
    resid = np.maximum(np.maximum(low_gap, high_gap), 0.0)
    bound_of = np.where(high_gap > 0, np.abs(lp.row_upper),
                        np.where(np.isfinite(lp.row_lower), np.abs(lp.row_lower), 0.0))
    row_err = resid / np.maximum.reduce([bound_of, terms, rs, np.full(n_rows, _TINY)])
    row_max = _worst(failures, Check.ROW, row_err, tol.feasibility, lp.row_names, "row",
                     "does not hold")

    value = float(lp.c @ x) + lp.offset
    # the objective's size at this plan (not at the largest plan imaginable: an optimum far
    # below what the columns could earn is exactly where a solver's tolerances mislead it)
    obj_size = max(abs(value), float(np.abs(lp.c * x).sum()), _TINY)
    if objective is not None:
        err = abs(objective - value) / obj_size
        if err > tol.optimality:
            failures.append(Failure(Check.OBJECTIVE, "objective", err,
                                    f"solver says {objective:.10g}, the plan gives {value:.10g}"))
    dual_max = gap = 0.0
    if row_duals is None or row_duals.shape != (n_rows,) or not np.all(np.isfinite(row_duals)):
        failures.append(Failure(Check.DUAL, "duals", np.inf, "missing or non-finite"))
    else:
        y = np.asarray(row_duals, dtype=np.float64)
        d = lp.c - _rmatvec(lp, y)
        # a dual pushing against a bound that does not exist: how much objective it hides
        row_wrong = np.where(((y > 0) & ~np.isfinite(lp.row_upper))
                             | ((y < 0) & ~np.isfinite(lp.row_lower)), np.abs(y) * rs, 0.0)
        col_wrong = np.where(((d > 0) & ~np.isfinite(up)) | ((d < 0) & ~np.isfinite(lo)),
                             np.abs(d) * cs, 0.0)
        dual_max = max(float(row_wrong.max(initial=0.0)),
                       float(col_wrong.max(initial=0.0))) / obj_size
        _worst(failures, Check.DUAL, row_wrong / obj_size, tol.optimality, lp.row_names, "row",
               "dual of the wrong sign")
        _worst(failures, Check.DUAL, col_wrong / obj_size, tol.optimality, lp.col_names,
               "column", "reduced cost of the wrong sign")
        row_side = np.where(y > 0, lp.row_upper, lp.row_lower)
        col_side = np.where(d > 0, up, lo)
        with np.errstate(invalid="ignore"):
            row_terms = np.where(np.isfinite(row_side) & (y != 0), y * (row_side - act), 0.0)
            col_terms = np.where(np.isfinite(col_side) & (d != 0), d * (col_side - x), 0.0)
        gap = abs(float(row_terms.sum() + col_terms.sum())) / obj_size
        if gap > tol.optimality:
            failures.append(Failure(Check.GAP, "duality gap", gap,
                                    "the duals do not prove this plan optimal"))
    return Verification(tuple(failures), row_max, bound_max, dual_max, gap, x)



def verify_infeasible(
    lp: MatrixLP,
    farkas: FloatArray | None,
    *,
    col_size: FloatArray | None = None,
    row_size: FloatArray | None = None,
    tol: Tolerances = TOLERANCES,
) -> Verification:
    """Check that row multipliers `farkas` (either sign) prove `lp` has no feasible point.

    For any feasible x, y·Ax lies between the least g·x over the column bounds (g = Aᵀy)
    and the most y·s over the row bounds; if the least exceeds the most, no x exists.
    A term with an infinite bound counts when its multiplier could move it by more than
    the tolerance (within the variable's or row's size); otherwise it is set aside and its
    largest possible effect is charged against the margin.
    """
    n_rows, n_cols = lp.shape
    if farkas is None or farkas.shape != (n_rows,) or not np.all(np.isfinite(farkas)):
        return Verification((Failure(Check.CERTIFICATE, "infeasibility", np.inf,
                                     "the solver gave no certificate"),), gap=-np.inf)
    cs, rs = _sizes(col_size, n_cols), _sizes(row_size, n_rows)
    best = -np.inf
    for sign in (1.0, -1.0):
        y = sign * np.asarray(farkas, dtype=np.float64)
        g = _rmatvec(lp, y)
        size = float(np.abs(y) @ rs + np.abs(g) @ cs)
        if size == 0:
            continue
        r_side = np.where(y > 0, lp.row_upper, lp.row_lower)
        c_side = np.where(g > 0, lp.col_lower, lp.col_upper)
        r_fin, c_fin = np.isfinite(r_side), np.isfinite(c_side)
        r_loose = (y != 0) & ~r_fin
        c_loose = (g != 0) & ~c_fin
        slop = float(np.abs(y[r_loose]) @ rs[r_loose] + np.abs(g[c_loose]) @ cs[c_loose])
        most = float(y[r_fin & (y != 0)] @ r_side[r_fin & (y != 0)])
        least = float(g[c_fin & (g != 0)] @ c_side[c_fin & (g != 0)])
        scale = size + float(np.abs(y[r_fin]) @ np.abs(np.nan_to_num(r_side[r_fin]))) + float(
            np.abs(g[c_fin]) @ np.abs(np.nan_to_num(c_side[c_fin])))
        best = max(best, (least - most - slop) / scale)
    if best > tol.certificate:
        return Verification(gap=best)
    return Verification((Failure(Check.CERTIFICATE, "infeasibility",
                                 float(-best) if np.isfinite(best) else np.inf,
                                 "the solver's certificate does not prove it"),), gap=best)


def verify_plan(
    policy: Policy, classes: Sequence[ClassSolution], tol: Tolerances = TOLERANCES
) -> list[Failure]:
    """The physical invariants, on the operator quantities the report prints.

    Every class is checked, elementwise over numpy columns of those quantities; failures
    come in class order, each class's in the order of the checks.
    """
    failures: list[Failure] = []
    f = tol.feasibility
    lam = np.array([cs.arrivals for cs in classes], dtype=np.float64)
    adm = np.array([cs.admitted for cs in classes], dtype=np.float64)
    srv = np.array([cs.served for cs in classes], dtype=np.float64)
    checks = (
        ((adm - lam) / lam, "admits more than arrives"),
        ((srv - adm) / lam, "serves more than it admits"),
        (-srv / lam, "serves a negative rate"),
    )
    bad = np.zeros(len(classes), dtype=bool)
    for err, _ in checks:
        bad |= err > f
    for i in np.flatnonzero(bad).tolist():
        for err, what in checks:
            if err[i] > f:
                failures.append(Failure(Check.PLAN, f"class '{classes[i].name}'",
                                        float(err[i]), what))
    B = float(policy.cluster.max_batch)
    share = sum(cs.x for cs in classes)
    mixed = sum(cs.y_m for cs in classes)
    solo = sum(cs.y_s for cs in classes)
    for cluster_err, what in (
        (share - 1.0, "prefills take more than every GPU (Σx > 1)"),
        ((mixed - (B - 1.0) * share) / B, "mixed GPUs hold more decodes than their slots"),
        ((solo - B * (1.0 - share)) / B, "solo GPUs hold more decodes than their slots"),
    ):
        if cluster_err > f:
            failures.append(Failure(Check.PLAN, "cluster", cluster_err, what))
    return failures
