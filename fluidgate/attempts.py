"""One solve, checked, retried under other solver configurations until an answer passes.

Both the main solve (`pipeline.py`) and every trial of the conflict search
(`formulations/diagnose.py`, `relax.py`) go through `solve_checked`, so a trial is trusted
exactly when a main solve would be. The caller says what its check is; the ladder of
configurations lives here, once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from fluidgate.solvers.base import MatrixLP, SolveOptions, SolverResult, TerminationStatus

if TYPE_CHECKING:
    from fluidgate.solvers.scaling import Scaling
    from fluidgate.verify import Failure, Verification

LOOSE_TOLERANCE = 1e-7  # the solvers' own default, for a last attempt
INFEASIBLE_CLAIMS = (TerminationStatus.INFEASIBLE, TerminationStatus.INFEASIBLE_OR_UNBOUNDED)


class Checked(Protocol):
    """What a check makes of one solver answer: None when the answer claims nothing that
    can be checked (an error, a limit), else the verification of its claim."""

    @property
    def verification(self) -> Verification | None: ...


Out = TypeVar("Out", bound=Checked)


def fallback_options(options: SolveOptions) -> list[SolveOptions]:
    """The configurations tried in turn: as asked, by simplex without presolve, then also
    without the solver's own scaling, then also at the solvers' usual tolerance. Each has
    rescued policies the others could not (tests/test_extreme.py)."""
    simplex = dataclasses.replace(options, method="simplex", presolve=False)
    careful = dataclasses.replace(simplex, solver_scaling=False)
    return [options, simplex, careful, dataclasses.replace(careful, tolerance=LOOSE_TOLERANCE)]


def solve_checked(
    solve: Callable[[SolveOptions], SolverResult],
    options: SolveOptions,
    check: Callable[[SolverResult], Out],
    timings: dict[str, float] | None = None,
) -> Out:
    """The first answer whose check passes, or the last answer when none does.

    An interior-point answer left off a vertex that fails is retried with crossover first.
    A time or iteration limit ends the ladder (each retry would hit it too). The solver's
    time is added to `timings["solve"]`; the check times itself.
    """
    attempts = fallback_options(options)
    last: Out | None = None
    for n, attempt in enumerate(attempts):  # the list can grow below, after n
        t0 = time.perf_counter()
        result = solve(attempt)
        if timings is not None:
            timings["solve"] = timings.get("solve", 0.0) + time.perf_counter() - t0
        if not result.vertex and attempt.crossover is not True:
            attempts.insert(n + 1, dataclasses.replace(attempt, crossover=True))
        last = check(result)
        if last.verification is None:
            if result.status is TerminationStatus.LIMIT:
                break
            continue
        if last.verification.ok:
            return last
    assert last is not None
    return last


@dataclass(frozen=True)
class Trial:
    """A checked answer to one feasibility or optimisation trial of the conflict search."""

    result: SolverResult
    verification: Verification | None = None

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.ok

    @property
    def feasible(self) -> bool:
        """Verified and feasible (a verified answer is either a plan or a certificate)."""
        return self.verified and self.result.status is TerminationStatus.OPTIMAL

    def failure(self, describe: Callable[[Failure], str] | None = None) -> str:
        """Why it is not verified, in words; `describe` names a failed row or column in
        the policy's terms (`CompiledLP.describe`), else its matrix name is used."""
        if self.verification is None:
            why = f": {self.result.message}" if self.result.message else ""
            return f"the solver stopped with status {self.result.status.value}{why}"
        worst = "; ".join(f.describe() if describe is None else describe(f)
                          for f in self.verification.worst(1))
        return f"its answer failed fluidgate's check in every attempt: {worst}"


def check_trial(lp: MatrixLP, scaling: Scaling, optimum: bool) -> Callable[[SolverResult], Trial]:
    """The check of a trial on `lp`: a plan must hold every row and bound (and, when
    `optimum`, be proved optimal by its duals); an infeasibility verdict needs a certificate.
    Sizes are the main solve's (`Scaling`), so a trial is judged as the policy is."""
    from fluidgate.verify import Check, verify_infeasible, verify_solution

    def check(result: SolverResult) -> Trial:
        cs, rs = scaling.col, scaling.row_size
        if result.status is TerminationStatus.OPTIMAL and result.x is not None:
            v = verify_solution(lp, result.x, result.row_duals if optimum else None,
                                result.objective if optimum else None,
                                col_size=cs, row_size=rs)
            if not optimum:  # a feasibility trial: only the primal checks apply
                primal = tuple(f for f in v.failures if f.check in (Check.ROW, Check.BOUND))
                v = dataclasses.replace(v, failures=primal)
            assert v.x is not None
            return Trial(dataclasses.replace(result, x=v.x), v)
        if result.status in INFEASIBLE_CLAIMS:
            v = verify_infeasible(lp, result.farkas, col_size=cs, row_size=rs)
            status = TerminationStatus.INFEASIBLE if v.ok else result.status
            return Trial(dataclasses.replace(result, status=status), v)
        return Trial(result)

    return check


class TrialUnverified(Exception):
    """A trial of the conflict search whose answer no configuration could verify."""

    def __init__(self, trial: Trial) -> None:
        super().__init__(trial.failure())
        self.trial = trial


def verified_trial(
    solve: Callable[[SolveOptions], SolverResult], lp: MatrixLP, scaling: Scaling,
    options: SolveOptions, *, optimum: bool,
) -> Trial:
    """A trial on `lp`, checked and retried; raises `TrialUnverified` when nothing passes,
    so an unverified answer can never be read as a verdict."""
    trial = solve_checked(solve, options, check_trial(lp, scaling, optimum))
    if not trial.verified:
        raise TrialUnverified(trial)
    return trial
