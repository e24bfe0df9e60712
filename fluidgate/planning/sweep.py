"""Sweeps: one policy re-solved along one or two varied parameters, each point verified.

The grid (one `Vary`, or the product of two, the first varying slowest) is cut into
contiguous chunks, one per worker; a worker builds the LP of its chunk's first point once and
re-solves the rest warm (`WarmFamily`); GPU-count sweeps solve each point fresh. Chunks are
cut by the worker count alone, so local processes and Ray return the same numbers in the same
order. A point whose answer fails verification is solved fresh, and if that fails too it is
reported with its status, never with a number.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from fluidgate.model import MetricRef, Policy
from fluidgate.parallel import Executor, LocalExecutor
from fluidgate.planning.vary import Kind, Vary, apply_vary
from fluidgate.solution import Solution


@dataclass(frozen=True)
class SloPoint:
    """One SLO at one point, in the SLO's display unit (`unit`)."""

    name: str
    value: float | None
    bound: float | None
    binding: bool
    # R* (per GPU per second) gained per display unit of looser bound
    shadow_price: float | None
    unit: str


@dataclass(frozen=True)
class SweepPoint:
    index: int
    values: dict[str, float]  # varied label -> value, base units (seconds, shares, scales)
    shown: dict[str, str]  # varied label -> value as written (`18 ms`, `x1.5`)
    status: str
    r_star: float | None = None  # objective per GPU per second
    revenue_rate: float | None = None  # money per GPU per second
    gpus: int | None = None
    mixed_gpus: int | None = None
    solo_gpus: int | None = None
    slos: tuple[SloPoint, ...] = ()
    path: str = "warm"  # warm (patched and re-solved) or fresh (built and solved anew)
    message: str = ""

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


@dataclass(frozen=True)
class Chunk:
    """What one worker solves: the policy, the varied parameters and its grid points."""

    policy: Policy
    varies: tuple[Vary, ...]
    points: tuple[tuple[int, tuple[float, ...]], ...]


@dataclass
class SweepResult:
    varies: tuple[Vary, ...]
    points: list[SweepPoint] = field(default_factory=list)


def grid(varies: Sequence[Vary]) -> list[tuple[float, ...]]:
    """Every combination, the first parameter varying slowest."""
    return list(itertools.product(*(v.values for v in varies)))


def point_policy(policy: Policy, varies: Sequence[Vary], values: Sequence[float]) -> Policy:
    for v, x in zip(varies, values, strict=True):
        policy = apply_vary(policy, v, x)
    return policy


def slo_names(policy: Policy) -> list[str]:
    """A stable name per SLO line (its bound changes along a sweep, its target does not)."""
    names: list[str] = []
    for slo in policy.slos:
        lhs = slo.lhs
        name = (f"{lhs.name}({lhs.arg})" if lhs.arg is not None else lhs.name) \
            if isinstance(lhs, MetricRef) else slo.label
        name = f"{name} {slo.op}"
        while name in names:
            name += "'"
        names.append(name)
    return names


def _record(index: int, varies: Sequence[Vary], values: Sequence[float], sol: Solution,
            path: str) -> SweepPoint:
    vals = {v.label: x for v, x in zip(varies, values, strict=True)}
    shown = {v.label: v.shown(x) for v, x in zip(varies, values, strict=True)}
    if not sol.optimal or sol.plan is None:
        message = sol.message if sol.status.value != "infeasible" else ""
        return SweepPoint(index, vals, shown, sol.status.value, path=path, message=message,
                          gpus=sol.policy.cluster.gpus)
    slos = tuple(
        SloPoint(name, None if o.value is None else o.value / o.unit_scale,
                 None if o.bound is None else o.bound / o.unit_scale, o.binding,
                 None if o.shadow_price is None else o.shadow_price * o.unit_scale, o.unit)
        for name, o in zip(slo_names(sol.policy), sol.slos, strict=True))
    return SweepPoint(index, vals, shown, "optimal", sol.objective, sol.revenue_rate,
                      sol.plan.gpus, sol.plan.mixed_gpus, sol.plan.solo_gpus, slos, path)


def solve_chunk(chunk: Chunk, on_point: Callable[[], None] | None = None) -> list[SweepPoint]:
    """One worker's share: warm re-solves where the parameters allow, fresh otherwise."""
    from fluidgate.pipeline import solve_policy
    from fluidgate.planning.resolve import WarmFamily

    out: list[SweepPoint] = []
    fresh = any(v.kind is Kind.GPUS for v in chunk.varies)
    family: WarmFamily | None = None
    for index, values in chunk.points:
        pol = point_policy(chunk.policy, chunk.varies, values)
        if fresh:
            sol, path = solve_policy(pol), "fresh"
        else:
            if family is None:
                family = WarmFamily(pol)
            before = family.fresh
            sol = family.solve(pol)
            path = "fresh" if family.fresh > before else "warm"
        out.append(_record(index, chunk.varies, values, sol, path))
        if on_point is not None:
            on_point()
    return out


def chunks(policy: Policy, varies: Sequence[Vary], workers: int) -> list[Chunk]:
    points = list(enumerate(grid(varies)))
    n = max(1, min(workers, len(points)))
    size, extra = divmod(len(points), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append(Chunk(policy, tuple(varies), tuple(points[start:end])))
        start = end
    return out


def run_sweep(policy: Policy, varies: Sequence[Vary], workers: int = 1,
              executor: Executor | None = None,
              progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Solve every grid point; the points come back in grid order whatever ran them."""
    parts = chunks(policy, varies, workers)
    ex = executor or LocalExecutor(workers)
    result = SweepResult(tuple(varies))
    done = 0
    total = sum(len(c.points) for c in parts)

    def tick(_: int) -> None:  # chunk `_` solved a point, in this process or in a worker
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for part in ex.map_ticking(solve_chunk, parts, tick):  # one chunk: in this process
        result.points.extend(part)
    return result


# --- output ------------------------------------------------------------------------------

def to_json(result: SweepResult) -> str:
    doc = {
        "vary": [{"spec": v.text, "label": v.label, "kind": v.kind.value, "unit": v.unit}
                 for v in result.varies],
        "points": [asdict(p) for p in result.points],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def to_csv(result: SweepResult) -> str:
    names: list[str] = []
    for p in result.points:
        for s in p.slos:
            if s.name not in names:
                names.append(s.name)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    labels = [v.label for v in result.varies]
    w.writerow([*labels, "status", "r_star", "revenue_rate", "mixed_gpus", "solo_gpus",
                *(f"{n} value" for n in names), *(f"{n} shadow_price" for n in names)])
    for p in result.points:
        by = {s.name: s for s in p.slos}
        w.writerow([*(p.shown[lbl] for lbl in labels), p.status, _cell(p.r_star),
                    _cell(p.revenue_rate), _cell(p.mixed_gpus), _cell(p.solo_gpus),
                    *(_cell(by[n].value if n in by else None) for n in names),
                    *(_cell(by[n].shadow_price if n in by else None) for n in names)])
    return buf.getvalue()


def _cell(v: float | int | None) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)
