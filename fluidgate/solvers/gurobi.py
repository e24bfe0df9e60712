"""Gurobi backend (optional): `pip install -e '.[gurobi]'` in the fluidgate checkout.

The licence inside the gurobipy wheel limits a model to 2,000 variables and 2,000 linear
constraints, and only says so at `optimize()` (error 10010); that case gets its own message
pointing at HiGHS. Duals are normalised to ∂(objective)/∂(bound), as for HiGHS.
"""

from __future__ import annotations

import time
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

SIZE_LIMITED_ERROR = 10010
SIZE_LIMIT = 2000


class GurobiSolver:
    name = "gurobi"
    capabilities = Capabilities(duals=True, iis=False)  # diagnosis: formulations/diagnose.py

    def available(self) -> Availability:
        try:
            import gurobipy as gp
        except ImportError:
            return Availability(
                False, "gurobipy is not installed (pip install -e '.[gurobi]' in the fluidgate "
                       "checkout), or use --solver highs")
        try:
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 0)
            env.start()
            env.dispose()
        except gp.GurobiError as exc:
            return Availability(False, f"no usable Gurobi licence ({exc}); use --solver highs")
        return Availability(True)

    def solve(self, lp: MatrixLP, options: SolveOptions) -> SolverResult:
        import gurobipy as gp
        from gurobipy import GRB

        start = time.perf_counter()
        try:
            with gp.Env(empty=True) as env:
                env.setParam("OutputFlag", 1 if options.verbose else 0)
                env.start()
                with gp.Model(env=env) as model:
                    return self._solve(gp, GRB, model, lp, options, start)
        except gp.GurobiError as exc:
            if getattr(exc, "errno", None) == SIZE_LIMITED_ERROR:
                n_rows, n_cols = lp.shape
                return SolverResult(
                    self.name, TerminationStatus.ERROR,
                    f"the model ({n_cols:,} variables, {n_rows:,} constraints) is too large "
                    f"for Gurobi's size-limited licence (at most {SIZE_LIMIT:,} of each, the "
                    "licence that comes with the pip package); use --solver highs or install "
                    "a full Gurobi licence", seconds=time.perf_counter() - start)
            return SolverResult(self.name, TerminationStatus.ERROR, f"Gurobi failed: {exc}",
                                seconds=time.perf_counter() - start)

    def _solve(self, gp: Any, GRB: Any, model: Any, lp: MatrixLP, options: SolveOptions,
               start: float) -> SolverResult:
        import scipy.sparse as sps

        n_rows, n_cols = lp.shape
        if options.time_limit is not None:
            model.Params.TimeLimit = options.time_limit
        if options.method == "simplex":
            model.Params.Method = 1
        elif options.method == "ipm":
            model.Params.Method = 2
        if not options.presolve:
            model.Params.Presolve = 0
        if not options.solver_scaling:
            model.Params.ScaleFlag = 0
            model.Params.NumericFocus = 3
        model.Params.FeasibilityTol = options.tolerance
        model.Params.OptimalityTol = options.tolerance
        model.Params.InfUnbdInfo = 1  # a Farkas certificate when infeasible, for verification
        x = model.addMVar(n_cols, lb=lp.col_lower, ub=lp.col_upper, obj=lp.c)
        model.ModelSense = GRB.MAXIMIZE
        model.ObjCon = lp.offset
        A = sps.csc_array((lp.A.data, lp.A.indices, lp.A.indptr), shape=lp.A.shape).tocsr()
        lo, up = lp.row_lower, lp.row_upper
        eq = np.isfinite(lo) & np.isfinite(up) & (lo == up)
        has_up = np.isfinite(up) & ~eq
        has_lo = np.isfinite(lo) & ~eq
        groups = []  # (row indices, constraints, sign of ∂obj/∂bound relative to Pi)
        for mask, sense, rhs in ((eq, "=", up), (has_up, "<", up), (has_lo, ">", lo)):
            idx = np.flatnonzero(mask)
            if idx.size:
                cons = model.addMConstr(A[idx], x, sense, rhs[idx])
                groups.append((idx, cons))
        model.optimize()
        seconds = time.perf_counter() - start
        status = model.Status
        if status == GRB.OPTIMAL:
            duals = np.zeros(n_rows)
            xv = np.asarray(x.X, dtype=np.float64)
            for idx, cons in groups:
                # Gurobi's Pi is ∂obj/∂rhs for the model's own sense: already normalised.
                duals[idx] = np.asarray(cons.Pi, dtype=np.float64)
            return SolverResult(self.name, TerminationStatus.OPTIMAL, "Optimal",
                                objective=float(model.ObjVal), x=xv, row_duals=duals,
                                seconds=seconds)
        if status == GRB.INF_OR_UNBD:
            model.Params.DualReductions = 0  # ask Gurobi to tell the two apart
            model.optimize()
            status = model.Status
        mapped = {
            GRB.INFEASIBLE: TerminationStatus.INFEASIBLE,
            GRB.UNBOUNDED: TerminationStatus.UNBOUNDED,
            GRB.INF_OR_UNBD: TerminationStatus.INFEASIBLE_OR_UNBOUNDED,
            GRB.TIME_LIMIT: TerminationStatus.LIMIT,
            GRB.ITERATION_LIMIT: TerminationStatus.LIMIT,
        }.get(status, TerminationStatus.ERROR)
        farkas = None
        if status == GRB.INFEASIBLE:
            try:
                farkas = np.zeros(n_rows)
                for idx, cons in groups:
                    farkas[idx] = np.asarray(cons.FarkasDual, dtype=np.float64)
            except gp.GurobiError:  # no certificate: verification will say so
                farkas = None
        return SolverResult(self.name, mapped, f"Gurobi status {status}",
                            seconds=time.perf_counter() - start, farkas=farkas)
