"""Re-solve a family of policies that differ only in numbers, without rebuilding the LP.

A sweep point differs from its neighbours in an SLO bound, a class's arrival rate or a
price. In the per-GPU LP those are right-hand sides (flow balance: `μ_p·x + θ·q_p = λ`),
objective coefficients (prices) and the coefficients of SLO rows: the Pyomo model is built
and compiled once, and each point patches those numbers into a copy of the arrays (the SLO
rows come from the same compiled SymPy templates, so a point costs float evaluations, not
algebra). The LP is solved warm on a kept `highspy.Highs` (`HighsSession`).

Every answer then goes through the checks a fresh solve makes (`fluidgate.verify`, on the
point's own arrays and scaling, and on the plan read back); an answer that fails them, or a
point whose rows do not fit the first point's pattern, is solved fresh by `solve_policy`,
with its retries. The GPU count is not patched: it changes which SLO templates apply
(cluster-wide rates and revenue are per-GPU quantities times n), so those points are fresh.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fluidgate.formulations.columns import Column, Var
from fluidgate.model import Objective, Policy
from fluidgate.solution import Solution
from fluidgate.solvers.base import CscMatrix, MatrixLP, SolveOptions, TerminationStatus


class WarmFamily:
    """The compiled LP of a first policy and a warm HiGHS, for policies of the same shape
    (the same classes, service rates, cluster and SLO lines; other numbers may differ)."""

    def __init__(self, first: Policy, options: SolveOptions | None = None) -> None:
        self.first = first
        self.options = dataclasses.replace(options or SolveOptions(), method="simplex",
                                           presolve=False)
        self._ready = False
        self.warm = 0  # points answered by the warm path
        self.fresh = 0  # points solved fresh (did not fit, or failed their check)

    def _build(self) -> None:
        from fluidgate.formulations.fluid_lp import build_fluid_lp
        from fluidgate.formulations.matrix import compile_matrix
        from fluidgate.formulations.slo import add_slos
        from fluidgate.formulations.slo_compile import SloCompiler
        from fluidgate.solvers.highs import HighsSession

        policy = self.first
        self.lp = build_fluid_lp(policy)
        add_slos(self.lp)
        self.compiled = compile_matrix(self.lp)
        self.compiler = SloCompiler(policy)  # its SymPy templates serve every point
        self.base_rows = [self.compiler.compile(slo) for slo in policy.slos]
        self._magnitudes: Any = None
        self.violation = {j for j, name in enumerate(self.compiled.columns)
                          if name[0] in ("violation", "violation_below")}
        self.columns = dict(self.compiled.column_index())
        self._index_entries()
        self.session = HighsSession(self.options)
        self._ready = True

    def _index_entries(self) -> None:
        """Where each SLO row's entries sit in the CSC data (the arrays a point patches)."""
        A = self.compiled.matrix.A
        self._entry_col = np.repeat(np.arange(A.shape[1]), np.diff(A.indptr))
        rows = self.compiled.rows
        self.balance = {int(ref.index): r for r, ref in enumerate(rows)  # type: ignore[call-overload]
                        if ref.component == "prefill_balance"}
        slo_row = {int(ref.index): r for r, ref in enumerate(rows)  # type: ignore[call-overload]
                   if ref.component == "slo"}
        self.slo_rows: dict[int, tuple[int, dict[int, int]]] = {}
        for k, r in slo_row.items():
            where = np.flatnonzero(A.indices == r)
            self.slo_rows[k] = (r, {int(self._entry_col[e]): int(e) for e in where})

    def _widen(self, extra: list[tuple[int, int]]) -> None:
        """Add entries (row, column) at 0 to the kept pattern: a coefficient that was exactly
        0 at the first point (tpot's solo term when the bound equals τ_solo) was left out."""
        from fluidgate.formulations.matrix import CompiledLP

        base = self.compiled.matrix
        A = base.A
        rows = [*A.indices.tolist(), *(r for r, _ in extra)]
        cols = [*self._entry_col.tolist(), *(j for _, j in extra)]
        vals = [*A.data.tolist(), *([0.0] * len(extra))]
        wide = CscMatrix.from_triplets(A.shape[0], A.shape[1], rows, cols, vals)
        self.compiled = CompiledLP(dataclasses.replace(base, A=wide), self.compiled.rows,
                                   self.compiled.columns)
        self._index_entries()

    def _patch(self, policy: Policy) -> tuple[MatrixLP, list[Any]] | None:
        """The point's arrays, or None when its rows do not fit the first point's pattern."""
        from fluidgate.formulations.slo_compile import SloCompileError, SloCompiler
        from fluidgate.metrics import revenue_coefficients

        base = self.compiled.matrix
        first = self.first
        if (policy.cluster != first.cluster or policy.pricing != first.pricing
                or policy.objective != first.objective or len(policy.slos) != len(first.slos)
                or [c.name for c in policy.classes] != [c.name for c in first.classes]
                or any(a.theta != b.theta or a.prompt != b.prompt or a.output != b.output
                       or a.weight != b.weight
                       for a, b in zip(policy.classes, first.classes, strict=True))):
            return None  # not the same LP shape: solved fresh
        same_classes = policy.classes == first.classes
        if same_classes:  # only SLO bounds differ: unchanged lines keep their rows
            compiler = self.compiler
        else:
            compiler = SloCompiler(policy)
            compiler._templates = self.compiler._templates
        try:
            rows = [self.base_rows[k] if same_classes and k < len(self.base_rows)
                    and s is self.first.slos[k] else compiler.compile(s)
                    for k, s in enumerate(policy.slos)]
        except SloCompileError:
            return None
        c = base.c.copy()
        lower, upper = base.row_lower.copy(), base.row_upper.copy()
        data = base.A.data.copy()
        if policy.objective is Objective.REVENUE and not same_classes:
            for i, cls in enumerate(policy.classes):
                rc = revenue_coefficients(policy.cluster, cls, policy.pricing)
                for var, v in ((Var.X, rc.x), (Var.Y_M, rc.y_m), (Var.Y_S, rc.y_s)):
                    j = self.columns.get(Column(var, i))
                    if j is not None:
                        c[j] = v
                    elif v != 0.0:
                        return None
        for i, cls in enumerate(policy.classes):
            r = self.balance[i]
            lower[r] = upper[r] = cls.rate
        violation = self.violation
        extra: list[tuple[int, int]] = []
        for k, row in enumerate(rows):
            if k < len(self.base_rows) and row is self.base_rows[k]:
                continue  # the first point's row: already in the arrays
            kept = self.slo_rows.get(k)
            if kept is None:
                if not row.trivial:
                    return None
                continue
            r, entries = kept
            for j, e in entries.items():
                if j not in violation:
                    data[e] = 0.0
            for col, coef in row.coeffs.items():
                j = self.columns.get(col)
                if j is None:
                    if col.cls_index is not None and coef != 0.0 and self._is_column(col):
                        return None
                    continue
                at = entries.get(j)
                if at is None:
                    if coef != 0.0:
                        extra.append((r, j))
                    continue
                data[at] = coef
            upper[r] = row.rhs
            lower[r] = row.rhs if row.equality else -np.inf
        if extra:
            self._widen(extra)
            return self._patch(policy)
        A = CscMatrix(base.A.shape, base.A.indptr, base.A.indices, data)
        return dataclasses.replace(base, c=c, A=A, row_lower=lower, row_upper=upper), rows

    def _is_column(self, col: Column) -> bool:
        """A per-class variable the first LP fixed at 0 (no patience) may stay out."""
        assert col.cls_index is not None
        cls = self.first.classes[col.cls_index]
        return not (col.var in (Var.Q_P, Var.Q_D) and cls.theta == 0.0)

    def solve(self, policy: Policy) -> Solution:
        """The point's verified solution: warm when it fits and passes, fresh otherwise."""
        if not self._ready:
            self._build()
        sol = self._warm(policy)
        if sol is not None:
            self.warm += 1
            return sol
        from fluidgate.pipeline import solve_policy

        self.fresh += 1
        return solve_policy(policy, "highs", self.options_fresh())

    def options_fresh(self) -> SolveOptions:
        return dataclasses.replace(self.options, method="auto", presolve=True)

    def _warm(self, policy: Policy) -> Solution | None:
        from fluidgate.formulations.fluid_lp import FluidLP
        from fluidgate.formulations.matrix import CompiledLP, column_magnitudes
        from fluidgate.formulations.slo import read_slos
        from fluidgate.solution import read_plan
        from fluidgate.solvers.scaling import Scaling
        from fluidgate.verify import verify_infeasible, verify_plan, verify_solution

        patched = self._patch(policy)
        if patched is None:
            return None
        matrix, rows = patched
        compiled = CompiledLP(matrix, self.compiled.rows, self.compiled.columns,
                              self.compiled.class_columns())
        compiled.__dict__["_column_index"] = self.columns  # the same columns: reuse the index
        lp = FluidLP(policy=policy, model=None, rows=rows)
        if policy.classes != self.first.classes:
            magnitudes = column_magnitudes(lp, compiled)
        else:  # they depend on the classes only
            if self._magnitudes is None:
                self._magnitudes = column_magnitudes(lp, compiled)
            magnitudes = self._magnitudes
        scaling = Scaling.from_magnitudes(matrix, magnitudes)
        result = scaling.unscale(self.session.solve(scaling.apply(matrix)))
        if result.status is TerminationStatus.INFEASIBLE:
            check = verify_infeasible(matrix, result.farkas, col_size=scaling.col,
                                      row_size=scaling.row_size)
            if not check.ok:
                return None
            return Solution(policy, "highs", result.status, result.message, verification=check)
        if result.status is not TerminationStatus.OPTIMAL or result.x is None:
            return None
        check = verify_solution(matrix, result.x, result.row_duals, result.objective,
                                col_size=scaling.col, row_size=scaling.row_size)
        if not check.ok or check.x is None:
            return None
        values = compiled.variable_values(check.x, len(policy.classes))
        readback = read_plan(policy, values)
        check = check.with_failures(verify_plan(policy, readback.classes))
        if not check.ok:
            return None
        result = dataclasses.replace(result, x=check.x)
        slos, penalty = read_slos(lp, compiled, result, values, readback.metrics)
        return Solution(
            policy=policy, solver="highs", status=result.status, message=result.message,
            objective=result.objective, revenue_rate=readback.revenue_rate, penalty=penalty,
            classes=readback.classes, plan=readback.plan, slos=tuple(slos),
            warnings=readback.warnings, verification=check, metrics=readback.metrics)
