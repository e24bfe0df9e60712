"""Capacity: the fewest GPUs at which every hard SLO holds for a given (grown) traffic.

The LP is per GPU, so a GPU count is not a parameter of it: the cluster-wide traffic is
fixed (the policy's rates times its GPU count, times `growth`) and `n` GPUs see `1/n` of
it each (`vary.with_gpus`). The SLOs' own constants stay as the policy wrote them
(cluster-wide). A probe is a full, verified solve at one `n`.

Feasibility is assumed monotone in `n` (more GPUs for the same traffic never break an SLO
that held); the search is bisection — or, with several workers, a k-section: each round
probes `workers` counts at once — and the assumption is checked at the answer: `n` holds,
`n − 1` does not, and no probe contradicts the threshold. R* per GPU only falls as GPUs are
added to the same traffic, so a floor on it (`min_r_star`) is checked at the fewest
feasible count: if it fails there, no count meets both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fluidgate.model import Policy
from fluidgate.parallel import Executor, LocalExecutor
from fluidgate.planning.vary import scale_rates, with_gpus

MAX_GPUS = 10_000_000


class CapacityError(Exception):
    """A probe could not be answered (solver failure or an unverified answer)."""


@dataclass(frozen=True)
class Probe:
    gpus: int
    status: str  # optimal | infeasible | ...
    r_star: float | None = None  # per GPU per second
    # hard SLOs that bind at the optimum: label, shadow price per display unit, that unit
    binding: tuple[tuple[str, float | None, str], ...] = ()
    # SLO lines in conflict when infeasible (`fluidgate solve`'s diagnosis)
    conflict: tuple[str, ...] = ()
    impatient: tuple[str, ...] = ()  # classes without patience that need more than n GPUs
    message: str = ""

    @property
    def feasible(self) -> bool:
        return self.status == "optimal"


@dataclass(frozen=True)
class ProbeTask:
    policy: Policy  # the grown traffic on the policy's own GPU count
    gpus: int


@dataclass
class CapacityAnswer:
    growth: float
    gpus: int | None  # None: no count up to MAX_GPUS meets the SLOs
    at: Probe | None = None  # the probe at the answer
    below: Probe | None = None  # the probe at answer − 1 (None when the answer is 1)
    probes: list[Probe] = field(default_factory=list)  # every probe, by GPU count
    monotone: bool = True  # no probe contradicts the threshold
    floor: float | None = None
    meets_floor: bool = True

    @property
    def deciding(self) -> tuple[str, ...]:
        """What stops one GPU fewer: the SLO lines in conflict there (or the impatient
        classes that need more GPUs than that)."""
        if self.below is None:
            return ()
        return self.below.conflict or tuple(f"class '{c}' (no patience) needs more capacity"
                                            for c in self.below.impatient)


def probe(task: ProbeTask) -> Probe:
    """One verified solve at `task.gpus` (module level: it runs in worker processes)."""
    from fluidgate.pipeline import solve_policy

    sol = solve_policy(with_gpus(task.policy, task.gpus))
    if sol.optimal:
        binding = tuple((o.label, None if o.shadow_price is None
                         else o.shadow_price * o.unit_scale, o.unit)
                        for o in sol.slos if o.binding and not o.soft)
        return Probe(task.gpus, "optimal", sol.objective, binding)
    if sol.status.value == "infeasible":
        conflict: tuple[str, ...] = ()
        impatient: tuple[str, ...] = ()
        if sol.conflict is not None:
            conflict = tuple(dict.fromkeys(s.label for g in sol.conflict.groups for s in g))
            impatient = tuple(sol.conflict.impatient_classes)
        return Probe(task.gpus, "infeasible", conflict=conflict, impatient=impatient)
    return Probe(task.gpus, sol.status.value, message=sol.message)


def find_capacity(policy: Policy, growth: float = 1.0, min_r_star: float | None = None,
                  executor: Executor | None = None,
                  progress: Callable[[int], None] | None = None) -> CapacityAnswer:
    """The fewest GPUs for `growth` times the policy's traffic; `progress(probes)` after
    each round."""
    ex = executor or LocalExecutor(1)
    traffic = scale_rates(policy, growth)
    seen: dict[int, Probe] = {}

    def run(counts: list[int]) -> None:
        todo = [n for n in dict.fromkeys(counts) if n not in seen]
        for p in ex.map(probe, [ProbeTask(traffic, n) for n in todo]):
            if not p.feasible and p.status != "infeasible":
                raise CapacityError(f"the solve at {p.gpus} GPUs failed: {p.status}: "
                                    f"{p.message}")
            seen[p.gpus] = p
        if progress is not None:
            progress(len(seen))

    width = max(1, ex.workers)
    lo, hi = 0, policy.cluster.gpus  # lo: known infeasible (0 GPUs serve nothing)
    run([hi])
    while not seen[hi].feasible:  # grow by doubling until the SLOs hold
        if hi >= MAX_GPUS:
            return _answer(growth, None, seen, min_r_star)
        lo, hi = hi, min(MAX_GPUS, hi * 2)
        run([hi])
    while hi - lo > 1:  # k-section: `width` probes per round, evenly inside (lo, hi)
        step = (hi - lo) / (width + 1)
        counts = sorted({min(hi - 1, max(lo + 1, round(lo + step * (k + 1))))
                         for k in range(width)})
        run(counts)
        for n in counts:
            if seen[n].feasible:
                hi = min(hi, n)
        lo = max([lo, *(n for n in counts if n < hi and not seen[n].feasible)])
    if lo >= 1:
        run([lo])
    return _answer(growth, hi, seen, min_r_star)


def _answer(growth: float, n: int | None, seen: dict[int, Probe],
            floor: float | None) -> CapacityAnswer:
    probes = [seen[k] for k in sorted(seen)]
    if n is None:
        return CapacityAnswer(growth, None, probes=probes, floor=floor)
    monotone = all(p.feasible == (p.gpus >= n) for p in probes)
    at = seen[n]
    meets = floor is None or (at.r_star is not None and at.r_star >= floor)
    return CapacityAnswer(growth, n, at, seen.get(n - 1), probes, monotone, floor, meets)
