"""Which SLOs cannot hold together, every conflict of them, and how far each line must move.

One irreducible infeasible subset (IIS) is not enough: when a policy holds two independent
conflicts, removing a line of the first leaves the second, so a report that names one IIS
and promises "removing any one of them makes the policy feasible" is false (47 of 113
infeasible reports in an audit). Here conflicts are found until they cover the
infeasibility: an IIS by deletion filtering (works with any backend: try each hard SLO row
off; keep it only if the rest becomes feasible), its rows set aside, the next IIS among the
remaining rows, until what remains is feasible. Each line then gets its nearest feasible
bound by an elastic re-solve (`relax.py`).

The matrix is compiled once; each trial only switches SLO rows off by widening their bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import numpy as np

from fluidgate.attempts import TrialUnverified, verified_trial
from fluidgate.conflict import Conflict, ConflictSlo
from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.formulations.matrix import CompiledLP
from fluidgate.formulations.relax import ElasticRow, loosening
from fluidgate.model import Const, Expr, Neg, SloConstraint
from fluidgate.solvers.base import SolveOptions, Solver
from fluidgate.solvers.scaling import Scaling

Progress = Callable[[int, int], None]
# Each conflict costs one LP per remaining hard row; past this many, the report says that more
# remain instead of searching on (fix these and solve again).
MAX_CONFLICTS = 10


class _Trials:
    """Feasibility of the base LP plus soft SLOs plus a chosen set of hard SLO rows, each
    verdict verified (`fluidgate.attempts`): a trial that cannot be verified raises
    `TrialUnverified` rather than counting as infeasible."""

    def __init__(self, lp: FluidLP, compiled: CompiledLP, backend: Solver, scaling: Scaling,
                 options: SolveOptions, progress: Progress | None) -> None:
        self.compiled, self.backend, self.options = compiled, backend, options
        self.scaling = scaling
        self.slo_rows: dict[int, list[int]] = {}
        for r, ref in enumerate(compiled.rows):
            if ref.component == "slo" and isinstance(ref.index, int):
                self.slo_rows.setdefault(ref.index, []).append(r)
        self.hard = [k for k in self.slo_rows if not lp.rows[k].slo.soft]
        self._progress = progress
        self.done, self.total = 0, len(self.hard)

    def off(self, active: Iterable[int]) -> np.ndarray:
        """Row mask: True for the hard SLO rows not in `active`."""
        off = np.zeros(self.compiled.matrix.shape[0], dtype=bool)
        keep = set(active)
        for k in self.hard:
            if k not in keep:
                off[self.slo_rows[k]] = True
        return off

    def feasible(self, active: Iterable[int]) -> bool:
        lp = self.compiled.matrix
        off = self.off(active)
        relaxed = dataclasses.replace(lp, row_lower=np.where(off, -np.inf, lp.row_lower),
                                      row_upper=np.where(off, np.inf, lp.row_upper))
        trial = verified_trial(lambda o: self.backend.solve(relaxed, o), relaxed, self.scaling,
                               self.options, optimum=False)
        self.tick()
        return trial.feasible

    def finish(self) -> None:
        """Fill the bar: `total` was an estimate (a bound may take one LP or several)."""
        self.total = self.done
        if self._progress is not None:
            self._progress(self.done, self.total)

    def tick(self) -> None:
        self.done += 1
        self.total = max(self.total, self.done)
        if self._progress is not None:
            self._progress(self.done, self.total)


def _deletion_filter(trials: _Trials, candidates: Sequence[int]) -> list[int]:
    """An IIS within `candidates` (which must be infeasible together)."""
    active = list(candidates)
    for k in candidates:
        trial = [j for j in active if j != k]
        if not trials.feasible(trial):
            active = trial
    return active


def _constant(e: Expr) -> float | None:
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Neg) and isinstance(e.operand, Const):
        return -e.operand.value
    return None


def _moved_bound(slo: SloConstraint, s: float) -> tuple[float | None, float | None]:
    """The constant side of `slo` before and after loosening by `s`: the row is
    `lhs − rhs ≤ s` (`rhs − lhs ≤ s` for `>=`, `lhs − rhs = s` for `==`)."""
    rhs = _constant(slo.rhs)
    if rhs is not None:
        return rhs, rhs - s if slo.op == ">=" else rhs + s
    lhs = _constant(slo.lhs)
    if lhs is not None:
        return lhs, lhs + s if slo.op == ">=" else lhs - s
    return None, None


def conflicting_slos(
    lp: FluidLP,
    compiled: CompiledLP,
    backend: Solver,
    scaling: Scaling,
    options: SolveOptions,
    progress: Progress | None = None,
) -> Conflict:
    """Conflicts covering the infeasibility of a policy the solver found infeasible, or say
    the base model (traffic without patience) is at fault.

    Every trial is verified with `scaling`'s sizes, as the main solve is; if one cannot be,
    the returned conflict names no lines and says why (`Conflict.unverified`) instead of
    risking a wrong report. `progress(done, total)` is called after each trial solve;
    `total` grows as conflicts and bounds are found.
    """
    trials = _Trials(lp, compiled, backend, scaling, options, progress)
    try:
        return _search(lp, compiled, trials)
    except TrialUnverified as exc:
        trials.finish()
        return Conflict(unverified=exc.trial.failure(partial(compiled.describe, lp.policy)))


def _search(lp: FluidLP, compiled: CompiledLP, trials: _Trials) -> Conflict:
    """The conflicts and their nearest bounds (`conflicting_slos`)."""
    if not trials.feasible([]):
        no_patience = [c.name for c in lp.policy.classes if c.patience is None]
        return Conflict(base_infeasible=True, impatient_classes=tuple(no_patience))
    groups: list[list[int]] = []
    remaining = list(trials.hard)
    more = False
    while True:
        if len(groups) == MAX_CONFLICTS:
            more = True
            break
        trials.total += len(remaining)
        iis = _deletion_filter(trials, remaining)
        if not iis:  # numerically borderline: the rows are infeasible only all together
            break
        groups.append(iis)
        remaining = [k for k in remaining if k not in iis]
        trials.total += 1
        if trials.feasible(remaining):
            break
    groups.sort(key=lambda g: min(g))  # in source order
    trials.total += 2 * sum(len(g) for g in groups)
    named = partial(compiled.describe, lp.policy)  # a failure in the policy's terms
    out = []
    for group in groups:
        # the other conflicts' lines set aside; the unexamined ones too when some remain
        held = group if more else remaining + group
        items = []
        for k in group:
            row, slo = lp.rows[k], lp.rows[k].slo
            elastic = ElasticRow(compiled, trials.off(j for j in held if j != k),
                                 trials.backend, trials.scaling, trials.options, trials.tick)
            try:
                s = loosening(row, compiled, elastic)
            except TrialUnverified as exc:
                items.append(ConflictSlo(slo.label, slo.span, slo.op, _moved_bound(slo, 0.0)[0],
                                         unit=slo.unit, unit_scale=slo.unit_scale,
                                         unreliable=exc.trial.failure(named)))
                continue
            bound, nearest = _moved_bound(slo, 0.0 if s is None else s)
            if s is None:
                nearest = None
            items.append(ConflictSlo(slo.label, slo.span, slo.op, bound, s, nearest,
                                     slo.unit, slo.unit_scale))
        out.append(tuple(items))
    trials.finish()
    return Conflict(groups=tuple(out), more=more)
