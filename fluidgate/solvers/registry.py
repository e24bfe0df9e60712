"""Look up solver backends by name without importing any solver library."""

from __future__ import annotations

from fluidgate.solvers.base import Solver, SolverUnavailable

SOLVER_NAMES = ("highs", "gurobi")


def get_solver(name: str) -> Solver:
    """Return a ready backend, or raise `SolverUnavailable` saying why and what to do."""
    key = name.lower()
    solver: Solver
    if key == "highs":
        from fluidgate.solvers.highs import HighsSolver

        solver = HighsSolver()
    elif key == "gurobi":
        from fluidgate.solvers.gurobi import GurobiSolver

        solver = GurobiSolver()
    else:
        raise SolverUnavailable(
            f"unknown solver '{name}'; choose one of {', '.join(SOLVER_NAMES)}"
        )
    avail = solver.available()
    if not avail.ok:
        raise SolverUnavailable(f"solver '{key}' is not available: {avail.reason}")
    return solver
