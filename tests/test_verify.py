"""Verification of solver answers, scaling, and the two policies of issue 7.

The hand LP: max x + y s.t. x + 2y ≤ 4, 3x + y ≤ 6, x, y ≥ 0; optimum (1.6, 1.2), R = 2.8,
duals (0.4, 0.2). Each check is shown to pass on the true answer and to fail on an answer
that breaks exactly what it checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.formulations.fluid_lp import build_fluid_lp
from fluidgate.formulations.matrix import column_magnitudes, compile_matrix
from fluidgate.formulations.slo import add_slos
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import load_policy
from fluidgate.solution import read_plan
from fluidgate.solvers.base import SolveOptions, TerminationStatus
from fluidgate.solvers.highs import HighsSolver
from fluidgate.solvers.scaling import Scaling, power_of_two
from fluidgate.verify import Check, verify_infeasible, verify_plan, verify_solution
from tests.conftest import EXAMPLES, ROOT, solver_params
from tests.test_solvers import lp

EXTREME = ROOT / "tests" / "policies" / "extreme"
HAND = lp([[1, 2], [3, 1]], [-np.inf, -np.inf], [4, 6], [1, 1])
X, Y = np.array([1.6, 1.2]), np.array([0.4, 0.2])


def checks(v: object) -> set[Check]:
    return {f.check for f in v.failures}  # type: ignore[attr-defined]


def test_true_optimum_passes() -> None:
    v = verify_solution(HAND, X, Y, 2.8)
    assert v.ok and v.gap < 1e-12 and v.row_residual < 1e-12


def test_each_check_fails_on_what_it_checks() -> None:
    assert Check.ROW in checks(verify_solution(HAND, np.array([1.7, 1.2]), Y, 2.9))
    assert Check.BOUND in checks(verify_solution(HAND, np.array([-0.5, 1.2]), Y, 0.7))
    assert Check.OBJECTIVE in checks(verify_solution(HAND, X, Y, 3.0))
    # feasible but not optimal: (1, 1) earns 2; no duals can prove it, these least of all
    assert Check.GAP in checks(verify_solution(HAND, np.array([1.0, 1.0]), Y, 2.0))
    # a dual pushing on a row's missing lower bound
    assert Check.DUAL in checks(verify_solution(HAND, X, np.array([-0.4, 0.2]), 2.8))
    assert Check.DUAL in checks(verify_solution(HAND, X, None, 2.8))


def test_farkas_certificate() -> None:
    """x + y ≤ 2 and x + y ≥ 3 (rows 1, 2): y = (1, −1) sums to 0 ≥ 1, impossible."""
    bad = lp([[1, 1], [1, 1]], [-np.inf, 3], [2, np.inf], [1, 1])
    assert verify_infeasible(bad, np.array([1.0, -1.0])).ok
    assert verify_infeasible(bad, np.array([-1.0, 1.0])).ok  # either sign convention
    assert not verify_infeasible(bad, np.array([1.0, 0.0])).ok
    assert not verify_infeasible(bad, None).ok
    assert not verify_infeasible(HAND, np.array([1.0, -1.0])).ok  # HAND is feasible


def test_scaling_is_exact_powers_of_two() -> None:
    f = power_of_two(np.array([3e-10, 1.0, 5e7, 0.0, np.inf]))
    assert list(f) == [2.0**-32, 1.0, 2.0**26, 1.0, 1.0]
    s = Scaling.from_magnitudes(HAND, np.array([1e-6, 1e6]))
    scaled = s.apply(HAND)
    x = np.array([0.3, 7.1])
    assert np.array_equal((x / s.col) * s.col, x)
    assert np.allclose(scaled.A.data, HAND.A.data * s.row[HAND.A.indices]
                       * s.col[np.repeat([0, 1], 2)])


def _fixture(name: str) -> Path:
    return EXTREME / name


@pytest.mark.parametrize("solver", solver_params())
@pytest.mark.parametrize(("name", "r_star"), [("tiny_rates.sli", 0.1),
                                              ("separate_extreme.sli", 15.3)])
def test_issue_7_policies_solve_to_their_hand_values(solver: str, name: str,
                                                     r_star: float) -> None:
    sol = solve_policy(load_policy(_fixture(name)).policy, solver)
    assert sol.status is TerminationStatus.OPTIMAL, sol.message
    assert sol.objective == pytest.approx(r_star, rel=1e-9)
    assert sol.verification is not None and sol.verification.ok
    for cs in sol.classes:
        assert cs.served <= cs.admitted * (1 + 1e-9) and cs.admitted <= cs.arrivals * (1 + 1e-9)
    if name == "tiny_rates.sli":  # everyone served, nobody abandons (see the fixture)
        assert sol.classes[0].served == pytest.approx(1e-9, rel=1e-9)


def _unscaled(name: str) -> tuple[object, object, object, object]:
    lpm = build_fluid_lp(load_policy(_fixture(name)).policy)
    add_slos(lpm)
    compiled = compile_matrix(lpm)
    scaling = Scaling.from_magnitudes(compiled.matrix, column_magnitudes(lpm, compiled))
    return lpm, compiled, scaling, HighsSolver().solve(compiled.matrix, SolveOptions())


def test_verification_catches_what_unscaled_highs_got_wrong() -> None:
    """Without scaling HiGHS drops the 1e-10 rates: the first policy "solves" to R* = 10,
    the second is "infeasible". Verification rejects both answers."""
    lpm, compiled, scaling, res = _unscaled("tiny_rates.sli")
    assert res.status is TerminationStatus.OPTIMAL and res.objective == pytest.approx(10)
    v = verify_solution(compiled.matrix, res.x, res.row_duals, res.objective,
                        col_size=scaling.col, row_size=scaling.row_size)
    values = compiled.variable_values(v.x, 1)
    plan = verify_plan(lpm.policy, read_plan(lpm.policy, values).classes)
    assert not v.ok or plan
    assert any(f.check is Check.PLAN and "serves more" in f.detail for f in plan)
    _, compiled, scaling, res = _unscaled("separate_extreme.sli")
    assert res.status is TerminationStatus.INFEASIBLE
    assert not verify_infeasible(compiled.matrix, res.farkas, col_size=scaling.col,
                                 row_size=scaling.row_size).ok


def _no_scaling() -> object:
    return mock.patch.object(Scaling, "from_magnitudes",
                             classmethod(lambda cls, m, _mag: cls.identity(m)))


def test_a_plan_that_fails_verification_exits_4_with_what_failed(tmp_path: Path) -> None:
    out = tmp_path / "sol.json"
    with _no_scaling():
        res = CliRunner().invoke(app, ["solve", str(_fixture("tiny_rates.sli")),
                                       "--json", str(out)])
    assert res.exit_code == 4, res.output
    assert "fails fluidgate's check in the policy's own units" in res.output
    assert "class 'a'" in res.output and "serves more than it admits" in res.output
    assert "try --solver gurobi" in res.output
    doc = json.loads(out.read_text())
    assert doc["status"] == "unverified" and doc["verified"] is False
    assert doc["objective"] is None and doc["classes"] == {}
    assert doc["verification"]["failures"]


def test_solution_document_records_the_verification(tmp_path: Path) -> None:
    out = tmp_path / "sol.json"
    res = CliRunner().invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "-q",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["verified"] is True
    v = doc["verification"]
    assert v["failures"] == [] and 0 <= v["row_residual"] < 1e-6 and 0 <= v["gap"] < 1e-6
    assert "verify" in doc["solver"]["seconds"]


def test_an_infeasible_verdict_is_certified() -> None:
    text = (EXAMPLES / "two_class.sli").read_text().replace("patience = 10 s",
                                                          "patience = none")
    from fluidgate.sli_dsl.loader import parse_policy

    sol = solve_policy(parse_policy(text.replace("0.5 /s per gpu", "2 /s per gpu")).policy)
    assert sol.status is TerminationStatus.INFEASIBLE
    assert sol.verification is not None and sol.verification.ok and sol.verification.gap > 0


@pytest.mark.parametrize("name", ["two_class.sli", "two_class_slo.sli", "dolly8.sli"])
def test_scaling_leaves_ordinary_answers_unchanged(name: str) -> None:
    """Powers of two change only exponents: R*, the plan, SLO values and shadow prices of
    the bundled policies match an unscaled solve to 1e-9."""
    policy = load_policy(EXAMPLES / name).policy
    scaled = solve_policy(policy)
    with _no_scaling():
        plain = solve_policy(policy)
    assert scaled.optimal and plain.optimal
    assert scaled.objective == pytest.approx(plain.objective, rel=1e-9)
    for a, b in zip(scaled.classes, plain.classes, strict=True):
        assert a.served == pytest.approx(b.served, rel=1e-9, abs=1e-12)
        assert a.admitted == pytest.approx(b.admitted, rel=1e-9, abs=1e-12)
    for sa, sb in zip(scaled.slos, plain.slos, strict=True):
        for va, vb in ((sa.value, sb.value), (sa.shadow_price, sb.shadow_price)):
            assert (va is None) == (vb is None)
            if va is not None and vb is not None:
                assert va == pytest.approx(vb, rel=1e-9, abs=1e-12)
