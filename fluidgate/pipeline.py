"""Policy → LP → solver → Solution, with the time spent in each stage.

The one function the CLI, the benchmarks and library users call. Each stage only talks to
the next through its typed object.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fluidgate.model import Policy
from fluidgate.solution import PlanReadback, Solution, read_plan
from fluidgate.solvers.base import SolveOptions, Solver, SolverResult, TerminationStatus
from fluidgate.solvers.registry import get_solver

if TYPE_CHECKING:
    from fluidgate.formulations.columns import Var
    from fluidgate.formulations.fluid_lp import FluidLP
    from fluidgate.formulations.matrix import CompiledLP
    from fluidgate.solvers.base import FloatArray
    from fluidgate.solvers.scaling import Scaling
    from fluidgate.verify import Verification


def solve_policy(
    policy: Policy,
    solver: str = "highs",
    options: SolveOptions | None = None,
    diagnose_progress: Callable[[int, int], None] | None = None,
) -> Solution:
    """Solve a checked policy. Raises `SolverUnavailable` if the solver cannot run here.

    The LP is solved in well-scaled units (`fluidgate.solvers.scaling`) and the answer is
    verified in the policy's own units (`fluidgate.verify`) before it is returned: a plan
    or an infeasibility verdict that fails its check is retried (`_solve_verified`), and
    otherwise returned with status `unverified`, never as optimal.

    When the policy is infeasible, the SLOs that conflict are found by one trial solve per
    hard SLO; `diagnose_progress(done, total)` reports on that search.
    """
    from fluidgate.formulations.base_arrays import base_lp
    from fluidgate.formulations.matrix import column_magnitudes
    from fluidgate.formulations.slo import read_slos
    from fluidgate.formulations.slo_arrays import slo_lp
    from fluidgate.solvers.scaling import ScaledSolver, Scaling

    options = options or SolveOptions()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # the arrays compiling the Pyomo model would give, without building and walking it
    # (base_arrays.py, slo_arrays.py); `explain` prints the Pyomo model
    lp, compiled = slo_lp(policy) if policy.slos else base_lp(policy)
    t1 = time.perf_counter()
    scaling = Scaling.from_magnitudes(compiled.matrix, column_magnitudes(lp, compiled))
    backend = ScaledSolver(get_solver(solver), scaling)
    t2 = time.perf_counter()
    timings.update(build=t1 - t0, compile=t2 - t1)
    outcome = _solve_verified(policy, lp, compiled, backend, scaling, options, timings)
    result, check = outcome.result, outcome.verification
    t3 = time.perf_counter()
    if result.status is TerminationStatus.UNVERIFIED:
        return Solution(policy, backend.name, result.status, result.message, timings=timings,
                        verification=check)
    if result.status is not TerminationStatus.OPTIMAL or result.x is None:
        conflict = None
        if result.status is TerminationStatus.INFEASIBLE:
            from fluidgate.formulations.diagnose import conflicting_slos

            conflict = conflicting_slos(lp, compiled, backend, scaling, options,
                                        diagnose_progress)
            timings["diagnose"] = time.perf_counter() - t3
        return Solution(policy, backend.name, result.status, result.message, timings=timings,
                        conflict=conflict, verification=check)
    assert outcome.values is not None and outcome.readback is not None
    readback = outcome.readback
    slos, penalty = read_slos(lp, compiled, result, outcome.values, readback.metrics)
    return Solution(
        policy=policy,
        solver=backend.name,
        status=result.status,
        message=result.message,
        objective=result.objective,
        revenue_rate=readback.revenue_rate,
        penalty=penalty,
        classes=readback.classes,
        plan=readback.plan,
        slos=tuple(slos),
        warnings=readback.warnings,
        timings=timings,
        verification=check,
        metrics=readback.metrics,
    )


@dataclass
class _Outcome:
    result: SolverResult
    verification: Verification | None = None
    values: dict[Var, FloatArray] | None = None
    readback: PlanReadback | None = None


RETRY_HINT = ("or bring the policy's numbers closer to typical values (the ranges in the "
              "language reference)")


def _solve_verified(
    policy: Policy,
    fluid: FluidLP,
    compiled: CompiledLP,
    backend: Solver,
    scaling: Scaling,
    options: SolveOptions,
    timings: dict[str, float],
) -> _Outcome:
    """Solve, check the answer (in the policy's units, and the plan read back from it), and
    if it fails retry under the other configurations of `fluidgate.attempts`."""
    from fluidgate.attempts import INFEASIBLE_CLAIMS, solve_checked
    from fluidgate.verify import verify_infeasible, verify_plan, verify_solution

    lp = compiled.matrix

    def check(result: SolverResult) -> _Outcome:
        t1 = time.perf_counter()
        if result.status is TerminationStatus.OPTIMAL and result.x is not None:
            check = verify_solution(lp, result.x, result.row_duals, result.objective,
                                    col_size=scaling.col, row_size=scaling.row_size)
            assert check.x is not None
            t2 = time.perf_counter()
            values = compiled.variable_values(check.x, len(policy.classes))
            readback = read_plan(policy, values, fluid.vectors)  # printed, checked next
            t1 += time.perf_counter() - t2  # the read-back is not verification's cost
            check = check.with_failures(verify_plan(policy, readback.classes))
            outcome = _Outcome(dataclasses.replace(result, x=check.x), check, values, readback)
        elif result.status in INFEASIBLE_CLAIMS:
            check = verify_infeasible(lp, result.farkas, col_size=scaling.col,
                                      row_size=scaling.row_size)
            if check.ok:
                result = dataclasses.replace(result, status=TerminationStatus.INFEASIBLE)
            outcome = _Outcome(result, check)
        else:
            return _Outcome(result)
        timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - t1
        return outcome

    last = solve_checked(lambda attempt: backend.solve(lp, attempt), options, check, timings)
    assert last is not None
    if last.verification is None or last.verification.ok:
        return last
    claim = ("an optimal plan" if last.result.status is TerminationStatus.OPTIMAL
             else "the policy infeasible")
    found = "".join(f"\n    - {compiled.describe(policy, f)}"
                    for f in last.verification.worst())
    other = "highs" if backend.name == "gurobi" else "gurobi"
    message = (f"{backend.name} reported {claim}, but the answer fails fluidgate's check in "
               f"the policy's own units, in every attempt:{found}\n    hint: try --solver "
               f"{other}, {RETRY_HINT}")
    unverified = SolverResult(backend.name, TerminationStatus.UNVERIFIED, message)
    return _Outcome(unverified, last.verification)
