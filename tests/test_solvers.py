"""Solver backends behind one interface: same primal, same normalised duals, same statuses.

Reference cases in the style of cvxpy's solver test helpers: each has primal and dual
values computed by hand or by the independent formulation, and runs on every backend.
"""

from __future__ import annotations

import numpy as np
import pytest

from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.solvers.base import CscMatrix, MatrixLP, SolveOptions, TerminationStatus
from fluidgate.solvers.registry import get_solver
from tests import independent
from tests.conftest import REFERENCE, solver_params, with_slo

INF = np.inf


def lp(rows: list[list[float]], lower: list[float], upper: list[float],
       c: list[float]) -> MatrixLP:
    dense = np.array(rows, dtype=float)
    r, k = np.nonzero(dense)
    A = CscMatrix.from_triplets(dense.shape[0], dense.shape[1], r.tolist(), k.tolist(),
                                dense[r, k].tolist())
    n = dense.shape[1]
    return MatrixLP(c=np.array(c, dtype=float), offset=0.0, A=A,
                    row_lower=np.array(lower, dtype=float), row_upper=np.array(upper, dtype=float),
                    col_lower=np.zeros(n), col_upper=np.full(n, INF))


@pytest.mark.parametrize("solver", solver_params())
def test_hand_solved_lp_primal_and_duals(solver: str) -> None:
    """max x + y s.t. x + 2y ≤ 4, 3x + y ≤ 6: x = 1.6, y = 1.2, R = 2.8.

    Duals from π1 + 3π2 = 1, 2π1 + π2 = 1: π = (0.4, 0.2). Written as −x − 2y ≥ −4 the
    first row's active bound is its lower one, and raising it tightens: ∂R/∂lb = −0.4.
    """
    backend = get_solver(solver)
    res = backend.solve(lp([[1, 2], [3, 1]], [-INF, -INF], [4, 6], [1, 1]), SolveOptions())
    assert res.status is TerminationStatus.OPTIMAL
    assert res.objective == pytest.approx(2.8)
    assert res.x == pytest.approx([1.6, 1.2])
    assert res.row_duals == pytest.approx([0.4, 0.2])
    flipped = backend.solve(lp([[-1, -2], [3, 1]], [-4, -INF], [INF, 6], [1, 1]),
                            SolveOptions())
    assert flipped.row_duals == pytest.approx([-0.4, 0.2])


@pytest.mark.parametrize("solver", solver_params())
def test_statuses_are_normalised(solver: str) -> None:
    backend = get_solver(solver)
    infeasible = backend.solve(lp([[1, 1]], [3], [2], [1, 1]), SolveOptions())
    assert infeasible.status is TerminationStatus.INFEASIBLE
    unbounded = backend.solve(lp([[1, -1]], [-INF], [1], [1, 1]), SolveOptions())
    assert unbounded.status in (TerminationStatus.UNBOUNDED,
                                TerminationStatus.INFEASIBLE_OR_UNBOUNDED)


CASES = {
    "tpot binds": ("tpot <= 23 ms",),
    "prefill fairness": ("spread(prefill) <= 0.01",),
    "abandonment cap": ("abandonment(all) <= 10 %",),
    "infeasible combination": ("abandonment(prefill_heavy) <= 5 %", "spread(prefill) <= 0.05"),
}


@pytest.mark.parametrize("solver", solver_params())
@pytest.mark.parametrize("case", list(CASES))
def test_reference_cases_agree_across_backends(solver: str, case: str) -> None:
    pol = parse_policy(with_slo(REFERENCE, *CASES[case])).policy
    highs = solve_policy(pol, "highs")
    other = solve_policy(pol, solver)
    assert other.status is highs.status
    if not highs.optimal:
        assert other.conflict is not None and highs.conflict is not None
        assert other.conflict.items == highs.conflict.items
        return
    assert other.objective == pytest.approx(highs.objective, rel=1e-7)
    for a, b in zip(highs.slos, other.slos, strict=True):
        assert b.shadow_price == pytest.approx(a.shadow_price, rel=1e-6, abs=1e-9)


def test_tpot_shadow_price_matches_independent_marginals() -> None:
    objective, shadow = independent.tpot_shadow_price(0.023)
    sol = solve_policy(parse_policy(with_slo(REFERENCE, "tpot <= 23 ms")).policy)
    assert sol.objective == pytest.approx(objective, rel=1e-7)
    assert sol.slos[0].shadow_price == pytest.approx(shadow, rel=1e-6)


def test_gurobi_size_limited_licence_gets_a_clear_message() -> None:
    try:
        get_solver("gurobi")
    except Exception as exc:
        pytest.skip(f"gurobi unavailable: {exc}")
    # 700 classes → 3,500 variables, over the pip licence's 2,000
    text = REFERENCE.split("class decode_heavy")[0] + "".join(
        f"class c{i} {{ rate = 0.001 /s per gpu; prompt = {100 + i} tokens; "
        f"output = 200 tokens; patience = 10 s }}\n" for i in range(700))
    sol = solve_policy(parse_policy(text).policy, "gurobi")
    if sol.optimal:
        pytest.skip("a full Gurobi licence is installed: no size limit to test")
    assert sol.status is TerminationStatus.ERROR
    assert "size-limited licence" in sol.message and "--solver highs" in sol.message
