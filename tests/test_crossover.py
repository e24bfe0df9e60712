"""Interior-point answers taken without crossover (large LPs, `solvers/highs.py`).

Above `NO_CROSSOVER_ABOVE_COLUMNS` HiGHS's interior point answer is used as it is, because
crossover cost more than the solve (docs/performance.md). Such an answer must still be the
optimum to 1e-9 and pass verification, and one that fails verification must be retried
with crossover before anything else, never printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from unittest import mock

import pytest

import fluidgate.solvers.highs as highs
import fluidgate.verify as verify
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import load_policy
from fluidgate.solvers.base import SolveOptions, TerminationStatus

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_class.sli"
REFERENCE_R = 297.7162  # DESIGN.md §2 / docs/model.md, bundled pricing


def test_interior_point_without_crossover_is_the_verified_optimum() -> None:
    policy = load_policy(EXAMPLE).policy
    vertex = solve_policy(policy, "highs", SolveOptions(method="simplex"))
    interior = solve_policy(policy, "highs", SolveOptions(method="ipm", crossover=False))
    assert interior.status is TerminationStatus.OPTIMAL
    assert interior.verification is not None and interior.verification.ok
    assert interior.objective == pytest.approx(REFERENCE_R, abs=5e-5)
    assert vertex.objective is not None
    assert interior.objective == pytest.approx(vertex.objective, rel=1e-9)


def test_large_lps_skip_crossover_small_ones_keep_it() -> None:
    from fluidgate.formulations.base_arrays import base_lp

    _, compiled = base_lp(load_policy(EXAMPLE).policy)
    solver = highs.HighsSolver()
    ipm = SolveOptions(method="ipm")
    assert solver.solve(compiled.matrix, ipm).vertex
    with mock.patch.object(highs, "NO_CROSSOVER_ABOVE_COLUMNS", 0):
        assert not solver.solve(compiled.matrix, ipm).vertex
        assert solver.solve(compiled.matrix, dataclasses.replace(ipm, crossover=True)).vertex
        assert solver.solve(compiled.matrix, SolveOptions(method="simplex")).vertex


def test_an_interior_answer_that_fails_verification_is_retried_with_crossover() -> None:
    policy = load_policy(EXAMPLE).policy
    seen: list[SolveOptions] = []
    real_solve, real_verify = highs.HighsSolver.solve, verify.verify_solution

    def spy(self: highs.HighsSolver, lp: object, options: SolveOptions) -> object:
        seen.append(options)
        return real_solve(self, lp, options)  # type: ignore[arg-type]

    def fail_interior(*args: object, **kwargs: object) -> verify.Verification:
        check = real_verify(*args, **kwargs)  # type: ignore[arg-type]
        if seen[-1].crossover is not True:  # pretend the interior answer is off
            return check.with_failures([verify.Failure(verify.Check.GAP, "objective", 1.0)])
        return check

    with mock.patch.object(highs, "NO_CROSSOVER_ABOVE_COLUMNS", 0), \
            mock.patch.object(highs.HighsSolver, "solve", spy), \
            mock.patch.object(verify, "verify_solution", fail_interior):
        sol = solve_policy(policy, "highs", SolveOptions(method="ipm"))
    assert [(o.method, o.crossover) for o in seen] == [("ipm", None), ("ipm", True)]
    assert sol.status is TerminationStatus.OPTIMAL
    assert sol.objective == pytest.approx(REFERENCE_R, abs=5e-5)
