"""Policy → LP → solver → Solution, with the time spent in each stage.

The one function the CLI, the benchmarks and library users call. Each stage only talks to
the next through its typed object.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fluidgate.model import Policy
from fluidgate.solution import Solution, class_solutions, revenue_per_gpu
from fluidgate.solvers.base import SolveOptions, TerminationStatus
from fluidgate.solvers.registry import get_solver


def solve_policy(
    policy: Policy,
    solver: str = "highs",
    options: SolveOptions | None = None,
    diagnose_progress: Callable[[int, int], None] | None = None,
) -> Solution:
    """Solve a checked policy. Raises `SolverUnavailable` if the solver cannot run here.

    When the policy is infeasible, the SLOs that conflict are found by one trial solve per
    hard SLO; `diagnose_progress(done, total)` reports on that search.
    """
    from fluidgate.formulations.fluid_lp import build_fluid_lp
    from fluidgate.formulations.matrix import compile_matrix
    from fluidgate.formulations.slo import add_slos, read_slos

    backend = get_solver(solver)
    options = options or SolveOptions()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    lp = build_fluid_lp(policy)
    add_slos(lp)
    t1 = time.perf_counter()
    compiled = compile_matrix(lp)
    t2 = time.perf_counter()
    result = backend.solve(compiled.matrix, options)
    t3 = time.perf_counter()
    timings.update(build=t1 - t0, compile=t2 - t1, solve=t3 - t2)
    if result.status is not TerminationStatus.OPTIMAL or result.x is None:
        conflict = None
        if result.status in (TerminationStatus.INFEASIBLE,
                             TerminationStatus.INFEASIBLE_OR_UNBOUNDED):
            from fluidgate.formulations.diagnose import conflicting_slos

            conflict = conflicting_slos(lp, compiled, backend, options, diagnose_progress)
            timings["diagnose"] = time.perf_counter() - t3
        return Solution(policy, backend.name, result.status, result.message, timings=timings,
                        conflict=conflict)
    values = compiled.variable_values(result.x, len(policy.classes))
    classes, plan, warnings = class_solutions(policy, values)
    revenue = revenue_per_gpu(policy, values)
    slos, penalty = read_slos(lp, compiled, result, values, classes, revenue)
    return Solution(
        policy=policy,
        solver=backend.name,
        status=result.status,
        message=result.message,
        objective=result.objective,
        revenue_rate=revenue,
        penalty=penalty,
        classes=classes,
        plan=plan,
        slos=tuple(slos),
        warnings=tuple(warnings),
        timings=timings,
    )
