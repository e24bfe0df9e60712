"""Which SLOs cannot hold together: an irreducible infeasible subset by deletion filtering.

Deletion filtering works with any backend and gives a set from which removing any single
SLO restores feasibility: exactly what an operator needs to decide what to relax. The
matrix is compiled once; each test only switches SLO rows off by widening their bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fluidgate.formulations.fluid_lp import FluidLP
from fluidgate.formulations.matrix import CompiledLP
from fluidgate.solution import Conflict
from fluidgate.solvers.base import MatrixLP, SolveOptions, Solver, TerminationStatus


def _feasible(backend: Solver, lp: MatrixLP, off: np.ndarray, options: SolveOptions) -> bool:
    lower = np.where(off, -np.inf, lp.row_lower)
    upper = np.where(off, np.inf, lp.row_upper)
    relaxed = dataclasses.replace(lp, row_lower=lower, row_upper=upper)
    return backend.solve(relaxed, options).status is TerminationStatus.OPTIMAL


Progress = Callable[[int, int], None]


def conflicting_slos(
    lp: FluidLP,
    compiled: CompiledLP,
    backend: Solver,
    options: SolveOptions,
    progress: Progress | None = None,
) -> Conflict:
    """Return the SLOs of an irreducible infeasible subset, or say the base model is at fault.

    `progress(done, total)` is called after each trial solve (one per hard SLO).
    """
    slo_rows: dict[int, list[int]] = {}
    for r, ref in enumerate(compiled.rows):
        if ref.component == "slo" and isinstance(ref.index, int):
            slo_rows.setdefault(ref.index, []).append(r)
    hard = [k for k in slo_rows if not lp.rows[k].slo.soft]
    n_rows = compiled.matrix.shape[0]

    def mask(active: list[int]) -> np.ndarray:
        off = np.ones(n_rows, dtype=bool)
        off[[r for r, ref in enumerate(compiled.rows) if ref.component != "slo"]] = False
        for k in slo_rows:
            if k in active or lp.rows[k].slo.soft:
                off[slo_rows[k]] = False
        return off

    if not _feasible(backend, compiled.matrix, mask([]), options):
        no_patience = [c.name for c in lp.policy.classes if c.patience is None]
        return Conflict(items=(), base_infeasible=True, impatient_classes=tuple(no_patience))
    active = list(hard)
    for done, k in enumerate(list(hard), start=1):
        trial = [j for j in active if j != k]
        if not _feasible(backend, compiled.matrix, mask(trial), options):
            active = trial
        if progress is not None:
            progress(done, len(hard))
    items = tuple(
        (lp.rows[k].slo.label, lp.rows[k].slo.span)
        for k in active
    )
    return Conflict(items=items, base_infeasible=False)
