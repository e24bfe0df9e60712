"""The conflict search trusts no trial solve unchecked (`fluidgate.attempts`).

A backend that lies about one trial — a plan that breaks a row, "infeasible" without a
certificate, an error — must never turn into a wrong conflict: the lie is retried under the
other configurations and, when every one lies, the report says the search could not be
verified (exit 3 still: the infeasibility itself is certified by the main solve).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fluidgate.pipeline as pipeline
from fluidgate.cli import app
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.solvers.base import MatrixLP, SolveOptions, SolverResult, TerminationStatus
from fluidgate.solvers.highs import HighsSolver
from tests.conftest import REFERENCE, with_slo
from tests.test_diagnose import TWO_CONFLICTS, hand_bounds

RUN = CliRunner()
HONEST_GROUPS = [["abandonment(prefill_heavy) <= 5 %", "spread(prefill) <= 0.05"],
                 ["ttft(prefill_heavy) <= 100 ms"]]

Lie = Callable[[MatrixLP, SolverResult], SolverResult]


def plan_breaking_a_row(lp: MatrixLP, truth: SolverResult) -> SolverResult:
    """(a) "optimal", with a plan inside the bounds: for an infeasible LP it must break a row."""
    x = np.clip(np.zeros(len(lp.c)), lp.col_lower, lp.col_upper)
    return SolverResult(truth.solver, TerminationStatus.OPTIMAL, "", float(lp.c @ x), x,
                        np.zeros(lp.shape[0]))


def infeasible_without_certificate(lp: MatrixLP, truth: SolverResult) -> SolverResult:
    """(b) "infeasible" with no Farkas certificate, for an LP that has plans."""
    return SolverResult(truth.solver, TerminationStatus.INFEASIBLE, "")


def error(lp: MatrixLP, truth: SolverResult) -> SolverResult:
    """(c) the solver fails."""
    return SolverResult(truth.solver, TerminationStatus.ERROR, "simulated solver failure")


class Lying:
    """HiGHS, except on one trial LP of the conflict search (found by `pick`, then recognised
    in every retry by its bounds and objective), where it answers `lie` — in every attempt,
    or only in the first configuration when `once`."""

    name = "highs"

    def __init__(self, pick: Callable[[MatrixLP, SolverResult], bool], lie: Lie,
                 once: bool = False) -> None:
        self.inner = HighsSolver()
        self.capabilities = self.inner.capabilities
        self.pick, self.lie, self.once = pick, lie, once
        self.calls = 0
        self.target: bytes | None = None
        self.lies = 0

    def available(self):  # type: ignore[no-untyped-def]
        return self.inner.available()

    def solve(self, lp: MatrixLP, options: SolveOptions) -> SolverResult:
        truth = self.inner.solve(lp, options)
        self.calls += 1
        key = lp.row_lower.tobytes() + lp.row_upper.tobytes() + lp.c.tobytes()
        if self.target is None and self.calls > 1 and self.pick(lp, truth):  # 1: the main solve
            self.target = key
        first = options == SolveOptions()
        if key == self.target and (first or not self.once):
            self.lies += 1
            return self.lie(lp, truth)
        return truth


def is_infeasible(lp: MatrixLP, truth: SolverResult) -> bool:
    return truth.status is TerminationStatus.INFEASIBLE


def is_feasible(lp: MatrixLP, truth: SolverResult) -> bool:
    return truth.status is TerminationStatus.OPTIMAL


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        backend: Lying) -> tuple[int, str, dict]:  # type: ignore[type-arg]
    monkeypatch.setattr(pipeline, "get_solver", lambda name: backend)
    path, out = tmp_path / "p.sli", tmp_path / "p.json"
    path.write_text(with_slo(REFERENCE, *TWO_CONFLICTS), encoding="utf-8")
    res = RUN.invoke(app, ["solve", str(path), "--json", str(out)])
    return res.exit_code, res.output, json.loads(out.read_text())


@pytest.mark.parametrize(("pick", "lie", "why"), [
    (is_infeasible, plan_breaking_a_row, "row check"),
    (is_feasible, infeasible_without_certificate, "the solver gave no certificate"),
    (is_feasible, error, "simulated solver failure"),
], ids=["optimal-breaking-a-row", "infeasible-without-certificate", "error"])
def test_a_trial_no_configuration_verifies_names_no_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    pick: Callable[[MatrixLP, SolverResult], bool], lie: Lie, why: str,
) -> None:
    backend = Lying(pick, lie)
    code, output, doc = run(tmp_path, monkeypatch, backend)
    assert backend.lies >= 2  # it was retried, and lied again
    assert code == 3, output
    assert doc["status"] == "infeasible" and doc["verified"] is True
    assert "the search for the service levels that conflict could not be verified" in output
    assert why in output
    assert "conflicting:" not in output and "nearest feasible bound" not in output
    conflict = doc["conflict"]
    assert conflict["search_verified"] is False and why in conflict["search_failure"]
    assert conflict["slos"] == [] and conflict["conflicts"] == 0
    # rows and columns named in the policy's terms, never by matrix name (`prefill_balance[0]`)
    assert re.search(r"\w\[\d+\]", output + conflict["search_failure"]) is None, output
    if why == "row check":
        assert "of class '" in conflict["search_failure"]


@pytest.mark.parametrize(("pick", "lie"), [
    (is_infeasible, plan_breaking_a_row),
    (is_feasible, infeasible_without_certificate),
    (is_feasible, error),
], ids=["optimal-breaking-a-row", "infeasible-without-certificate", "error"])
def test_a_lie_in_one_configuration_is_retried_and_the_report_is_the_true_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    pick: Callable[[MatrixLP, SolverResult], bool], lie: Lie,
) -> None:
    backend = Lying(pick, lie, once=True)
    code, output, doc = run(tmp_path, monkeypatch, backend)
    assert backend.lies == 1 and code == 3, output
    conflict = doc["conflict"]
    assert conflict["search_verified"] is True
    found: dict[int, list[str]] = {}
    for s in conflict["slos"]:
        found.setdefault(s["conflict"], []).append(s["label"])
    assert list(found.values()) == HONEST_GROUPS
    got = {s["label"]: s["nearest_feasible_bound"] for s in conflict["slos"]}
    assert got == pytest.approx(hand_bounds(), rel=1e-7)


def is_elastic_for_spread(main_c: list[np.ndarray]) -> Callable[[MatrixLP, SolverResult], bool]:
    """An elastic re-solve (its objective is not the policy's) that has a plan."""
    def pick(lp: MatrixLP, truth: SolverResult) -> bool:
        return (truth.status is TerminationStatus.OPTIMAL
                and not np.array_equal(lp.c, main_c[0]))
    return pick


def test_an_unverifiable_nearest_bound_is_not_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong elastic optimum (a plan breaking a row) leaves that line without a bound and
    says why; the conflicts, and the other lines' bounds, stay the true ones."""
    main_c: list[np.ndarray] = []
    inner_solve = HighsSolver.solve

    def remember(self: HighsSolver, lp: MatrixLP, options: SolveOptions) -> SolverResult:
        if not main_c:
            main_c.append(lp.c.copy())
        return inner_solve(self, lp, options)

    monkeypatch.setattr(HighsSolver, "solve", remember)
    wrong = dataclasses.replace
    backend = Lying(is_elastic_for_spread(main_c),
                    lambda lp, truth: wrong(truth, x=truth.x * 0.0 + 1e6))
    code, output, doc = run(tmp_path, monkeypatch, backend)
    assert code == 3 and backend.lies >= 2, output
    conflict = doc["conflict"]
    assert conflict["search_verified"] is True
    unreliable = [s for s in conflict["slos"] if not s["nearest_bound_verified"]]
    assert len(unreliable) == 1 and unreliable[0]["nearest_feasible_bound"] is None
    label = unreliable[0]["label"]
    assert f"{label}: the nearest feasible bound could not be computed reliably" in output
    hand = hand_bounds()
    for s in conflict["slos"]:
        if s["label"] != label:
            assert s["nearest_feasible_bound"] == pytest.approx(hand[s["label"]], rel=1e-7)


def test_real_policies_search_verifies_every_trial() -> None:
    """Honest HiGHS: every trial passes its check on the first configuration, so the report
    is the one tests/test_diagnose.py checks by hand (and nothing says 'unverified')."""
    sol = pipeline.solve_policy(parse_policy(with_slo(REFERENCE, *TWO_CONFLICTS)).policy)
    assert sol.conflict is not None and not sol.conflict.unverified
    assert [[i.label for i in g] for g in sol.conflict.groups] == HONEST_GROUPS
    assert all(not i.unreliable for g in sol.conflict.groups for i in g)
