"""HiGHS backend (the default): embedded, open source, no licence."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from fluidgate.solvers.base import (
    Availability,
    Capabilities,
    MatrixLP,
    SolveOptions,
    SolverResult,
    TerminationStatus,
)


@contextlib.contextmanager
def stdout_silenced() -> Iterator[None]:
    """HiGHS prints a banner from C++ on the first `Highs()`, whatever its options say."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdout (captured, notebooks)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


# Beyond ~4,000 classes HiGHS's interior point beats simplex by ~10x on the fluid LP
# (10,000 classes: 0.8 s against 7.6 s; docs/performance.md), with the same optimum.
IPM_ABOVE_COLUMNS = 20_000
# Above this size the interior point's answer is used without crossover (unless asked):
# at 50,000 classes crossover took longer than the interior point itself (docs/
# performance.md), and the answer, at a tighter IPM optimality tolerance, still passes
# verification's residual, dual-sign and duality-gap checks; if not, a retry crosses over.
NO_CROSSOVER_ABOVE_COLUMNS = 100_000
IPM_OPTIMALITY_TOLERANCE = 1e-10  # HiGHS's default 1e-8 left the objective 2.5e-9 off


class HighsSolver:
    name = "highs"
    capabilities = Capabilities(duals=True, iis=False)  # diagnosis: formulations/diagnose.py

    def available(self) -> Availability:
        try:
            import highspy  # noqa: F401
        except ImportError:
            return Availability(
                False, "highspy is not installed (pip install -e . in the fluidgate checkout)")
        return Availability(True)

    def _load(self, lp: MatrixLP, options: SolveOptions) -> Any:
        import highspy

        with stdout_silenced():
            h = highspy.Highs()  # type: ignore[no-untyped-call]
            h.setOptionValue("output_flag", bool(options.verbose))
        if options.time_limit is not None:
            h.setOptionValue("time_limit", float(options.time_limit))
        n_rows, n_cols = lp.shape
        method = options.method
        if method == "auto" and n_cols > IPM_ABOVE_COLUMNS:
            method = "ipm"
        if method in ("simplex", "ipm"):
            h.setOptionValue("solver", method)
        crossover = options.crossover
        if crossover is None:
            crossover = n_cols <= NO_CROSSOVER_ABOVE_COLUMNS
        if method == "ipm" and not crossover:
            h.setOptionValue("run_crossover", "off")
            h.setOptionValue("ipm_optimality_tolerance", IPM_OPTIMALITY_TOLERANCE)
        if not options.presolve:
            h.setOptionValue("presolve", "off")
        if not options.solver_scaling:
            h.setOptionValue("simplex_scale_strategy", 0)
        for name in ("primal_feasibility_tolerance", "dual_feasibility_tolerance"):
            h.setOptionValue(name, float(options.tolerance))
        A = lp.A
        model = highspy.HighsLp()
        model.num_col_ = n_cols
        model.num_row_ = n_rows
        model.sense_ = highspy.ObjSense.kMaximize
        model.offset_ = float(lp.offset)
        model.col_cost_ = np.asarray(lp.c, dtype=np.float64)
        model.col_lower_ = np.asarray(lp.col_lower, dtype=np.float64)
        model.col_upper_ = np.asarray(lp.col_upper, dtype=np.float64)
        model.row_lower_ = np.asarray(lp.row_lower, dtype=np.float64)
        model.row_upper_ = np.asarray(lp.row_upper, dtype=np.float64)
        model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        model.a_matrix_.start_ = np.asarray(A.indptr, dtype=np.int32)
        model.a_matrix_.index_ = np.asarray(A.indices, dtype=np.int32)
        model.a_matrix_.value_ = np.asarray(A.data, dtype=np.float64)
        status = h.passModel(model)
        if status == highspy.HighsStatus.kError:
            raise RuntimeError("HiGHS rejected the model (passModel returned an error)")
        if h.getNumCol() != n_cols or h.getNumRow() != n_rows:
            raise RuntimeError("HiGHS loaded a model of the wrong size")
        return h

    def solve(self, lp: MatrixLP, options: SolveOptions) -> SolverResult:
        start = time.perf_counter()
        try:
            h = self._load(lp, options)
            run_status = h.run()
        except Exception as exc:  # highspy raises plain RuntimeErrors
            return SolverResult(self.name, TerminationStatus.ERROR, f"HiGHS failed: {exc}")
        return self._result(h, run_status, start)

    def _result(self, h: Any, run_status: Any, start: float) -> SolverResult:
        import highspy

        ms = h.getModelStatus()
        seconds = time.perf_counter() - start
        text = h.modelStatusToString(ms)
        MS = highspy.HighsModelStatus
        if ms == MS.kOptimal:
            sol = h.getSolution()
            info = h.getInfo()
            return SolverResult(
                self.name,
                TerminationStatus.OPTIMAL,
                text,
                objective=float(info.objective_function_value),
                x=np.asarray(sol.col_value, dtype=np.float64),
                # HiGHS reports ∂obj/∂b for the problem's own sense: already normalised.
                row_duals=np.asarray(sol.row_dual, dtype=np.float64),
                seconds=seconds,
                vertex=bool(info.basis_validity),
            )
        farkas = self._farkas(h) if ms == MS.kInfeasible else None
        status = {
            MS.kInfeasible: TerminationStatus.INFEASIBLE,
            MS.kUnbounded: TerminationStatus.UNBOUNDED,
            MS.kUnboundedOrInfeasible: TerminationStatus.INFEASIBLE_OR_UNBOUNDED,
            MS.kTimeLimit: TerminationStatus.LIMIT,
            MS.kIterationLimit: TerminationStatus.LIMIT,
        }.get(ms, TerminationStatus.ERROR)
        if run_status == highspy.HighsStatus.kError and status == TerminationStatus.ERROR:
            text = f"HiGHS stopped with an error ({text})"
        return SolverResult(self.name, status, text, seconds=seconds, farkas=farkas)

    @staticmethod
    def _farkas(h: Any) -> np.ndarray | None:
        """HiGHS's dual ray, when it has one (it computes it on request)."""
        try:
            with stdout_silenced():
                _, has_ray, ray = h.getDualRay()
        except Exception:  # no ray is a normal answer: verification decides
            return None
        if not has_ray:
            return None
        return np.asarray(ray, dtype=np.float64)


class HighsSession:
    """One kept `highspy.Highs` for a family of LPs of one shape (a sweep): each `solve`
    pushes only the numbers that differ from the last LP it loaded and re-solves from the
    last basis (the simplex warm start), instead of building the model anew.

    The LPs must share the sparsity pattern of the first one; one that does not is loaded
    whole (the warm start is lost, the answer is not). The caller verifies every answer as
    it would a fresh one: a warm start changes how the optimum is reached, not what it is.
    """

    def __init__(self, options: SolveOptions) -> None:
        self.options = options
        self._solver = HighsSolver()
        self._h: Any = None
        self._lp: MatrixLP | None = None
        self.reloads = 0

    def _push(self, lp: MatrixLP) -> None:
        old = self._lp
        h = self._h
        if (old is None or h is None or old.shape != lp.shape
                or not np.array_equal(old.A.indptr, lp.A.indptr)
                or not np.array_equal(old.A.indices, lp.A.indices)):
            self._h = self._solver._load(lp, self.options)
            self._lp = lp
            self.reloads += 1
            return
        changed = np.flatnonzero(old.c != lp.c)
        if changed.size:
            h.changeColsCost(changed.size, changed.astype(np.int32), lp.c[changed])
        changed = np.flatnonzero((old.col_lower != lp.col_lower)
                                 | (old.col_upper != lp.col_upper))
        if changed.size:
            h.changeColsBounds(changed.size, changed.astype(np.int32), lp.col_lower[changed],
                               lp.col_upper[changed])
        changed = np.flatnonzero((old.row_lower != lp.row_lower)
                                 | (old.row_upper != lp.row_upper))
        if changed.size:
            h.changeRowsBounds(changed.size, changed.astype(np.int32), lp.row_lower[changed],
                               lp.row_upper[changed])
        entries = np.flatnonzero(old.A.data != lp.A.data)
        if entries.size:
            cols = np.searchsorted(lp.A.indptr, entries, side="right") - 1
            for e, j in zip(entries.tolist(), cols.tolist(), strict=True):
                h.changeCoeff(int(lp.A.indices[e]), int(j), float(lp.A.data[e]))
        if lp.offset != old.offset:
            h.changeObjectiveOffset(float(lp.offset))
        self._lp = lp

    def solve(self, lp: MatrixLP) -> SolverResult:
        start = time.perf_counter()
        try:
            self._push(lp)
            run_status = self._h.run()
        except Exception as exc:  # highspy raises plain RuntimeErrors
            self._h = self._lp = None
            return SolverResult(self._solver.name, TerminationStatus.ERROR,
                                f"HiGHS failed: {exc}")
        return self._solver._result(self._h, run_status, start)
