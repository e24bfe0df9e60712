"""The gate-and-route decision rules (DESIGN.md §4), once, as pure functions over arrays.

Every consumer — the runtime `Controller`, the simulator's compiled event loop, the
harness gateway — decides with these functions and nothing else, so a measured result
and a simulated one come from the same rule. To make that possible at simulator speed
(≥ 10⁶ events/s) each rule is written so that `numba.njit(rule)` compiles it unchanged:
arguments are numpy arrays and scalars, results are ints, bodies use only loops,
arithmetic and comparisons — no objects, containers, exceptions, or calls to other
Python functions (an njit function can only call other compiled functions). `jit(rule)`
compiles one; `compile_rules()` compiles them all, with `gate(rule, ...)` and
`route(rule, ...)` — dispatchers on a rule code, defined once by `make_gate` and
`make_router` over either the Python or the compiled rules — for an event loop that
takes the policy as data. Compile once per process, at start-up.

Classes are the indices ``0..K-1``. Decisions are codes (module-level ints, mirrored by
the IntEnums of `runtime.py` for the Python API):

* a gate returns the class to admit, or ``NO_CLASS`` (−1) when no class waits;
* a router returns a placement: start now on a free slot (``SOLO``, ``MIXED``, ``LOCAL``)
  or wait in a buffer (``WAIT_SHARED``, ``WAIT_SOLO``, ``WAIT_MIXED``, ``WAIT_LOCAL``);
* `buffer_for_slot` says which buffer's head takes a decode slot that has just freed.

Ties are broken deterministically and documented per rule, so that two implementations
driven by the same events make the same decisions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

# Compiled, the rules take 1-d numpy arrays. Called from plain Python they also take lists,
# which the runtime uses there because indexing a list is several times faster than
# indexing an array from the interpreter.
IntArray = npt.NDArray[np.int64] | list[int]
FloatArray = npt.NDArray[np.float64] | list[float]
OrderArray = npt.NDArray[Any] | list[int] | list[float]

NO_CLASS = -1

# Placements of a finished prefill's decode (`route_*`), and the buffers it may wait in.
SOLO = 0  # start now on a solo GPU (decode-only pool) with a free slot
MIXED = 1  # start now on a mixed GPU (one prefill slot, ≤ B−1 decodes) with a free slot
LOCAL = 2  # start now on the GPU that ran the prefill
WAIT_SHARED = 3  # the one FCFS buffer of the solo-first router, served by both pools
WAIT_SOLO = 4  # the solo pool's own FCFS buffer (SLI router)
WAIT_MIXED = 5  # the mixed pool's own FCFS buffer (SLI router)
WAIT_LOCAL = 6  # the prefilling GPU's own FCFS buffer (stay-on-GPU baselines)
NO_BUFFER = -1

# Gate codes, for `gate`.
GATE_DEFICIT = 0
GATE_PRIORITY = 1
GATE_FCFS = 2

# Router codes, for `route` and `buffer_for_slot`.
ROUTER_SOLO_FIRST = 0
ROUTER_SLI = 1
ROUTER_STAY = 2


def gate_deficit(
    waiting: IntArray, running: IntArray, target_x: FloatArray, target_qp: FloatArray,
    buffered: int, target_buffered: float
) -> int:
    """Occupancy-deficit gate (bundled pricing): the eligible class furthest below target.

    For each class with ``waiting[i] > 0`` the relative deficit is
    ``ξ_i = (running[i] − target_x[i]) / target_x[i]`` with ``target_x = n·x*`` (DESIGN.md
    §4 divides by ``x*`` rather than ``n·x*``: the same order, scaled by ``1/n``). The
    smallest ``ξ`` wins; ties go to the largest prefill-queue excess
    ``waiting[i] − target_qp[i]`` (``target_qp = n·q_p*``), then to the lowest index.
    A class with ``target_x[i] == 0`` has ``ξ = +∞``: the plan gives it no prefill
    capacity, so it is admitted only when no class with a positive target waits.

    Decode-aware throttling: a class the plan throttles (``target_qp[i] > 0``: the LP
    lets part of it wait and abandon because the decode pool cannot take it) is not
    eligible while more decodes wait for a slot than the plan's decode queue
    (``buffered > target_buffered``, ``target_buffered = n·Σq_d*``, usually 0). The decode
    pool is then already over its plan, and one more admission of the rationed class would
    only add a decode that waits — at critical load, abandons after its prefill was paid
    for. The slot then stays idle (``NO_CLASS`` although a class waits) until an event
    changes the answer: an arrival, a prefill finishing, a decode leaving a buffer.
    Fully admitted classes (``target_qp[i] == 0``) are never held back.
    """
    best = NO_CLASS
    best_xi = 0.0
    best_excess = 0.0
    over = buffered > target_buffered
    for i in range(len(waiting)):
        if waiting[i] <= 0 or (over and target_qp[i] > 0.0):
            continue
        t = target_x[i]
        xi = (running[i] - t) / t if t > 0.0 else np.inf
        excess = waiting[i] - target_qp[i]
        if best == NO_CLASS or xi < best_xi or (xi == best_xi and excess > best_excess):
            best = i
            best_xi = xi
            best_excess = excess
    return best


def gate_priority(waiting: IntArray, rank: OrderArray) -> int:
    """Static-priority gate (separate pricing): the waiting class with the smallest rank.

    ``rank[i]`` is the spec's ``priority`` (1 = largest ``D_i/P_i``, admitted first). Spec
    ranks are unique; equal ranks would go to the lowest index.
    """
    best = NO_CLASS
    for i in range(len(waiting)):
        if waiting[i] > 0 and (best == NO_CLASS or rank[i] < rank[best]):
            best = i
    return best


def gate_fcfs(waiting: IntArray, head: OrderArray) -> int:
    """First-come-first-served admission: the waiting class whose oldest request came first.

    ``head[i]`` orders class i's oldest waiting request (an arrival ticket or time; read
    only where ``waiting[i] > 0``). Equal heads go to the lowest index.
    """
    best = NO_CLASS
    for i in range(len(waiting)):
        if waiting[i] > 0 and (best == NO_CLASS or head[i] < head[best]):
            best = i
    return best


def route_solo_first(free_solo: int, free_mixed: int) -> int:
    """Solo-first router: a free solo slot, else a free mixed slot, else the shared buffer."""
    if free_solo > 0:
        return SOLO
    if free_mixed > 0:
        return MIXED
    return WAIT_SHARED


def route_sli(p_solo: float, u: float, free_solo: int, free_mixed: int) -> int:
    """SLI router: the solo pool with probability `p_solo`, each pool with its own buffer.

    `u` is a uniform draw on ``[0, 1)`` from the caller's seeded generator; the solo pool
    is chosen when ``u < p_solo`` (so ``p_solo = 1`` always and ``p_solo = 0`` never). The
    pool is chosen first and kept: a decode sent to a full pool waits in that pool's
    buffer even if the other pool has room, which keeps each class's split at ``p_s,i``.
    """
    if u < p_solo:
        return SOLO if free_solo > 0 else WAIT_SOLO
    return MIXED if free_mixed > 0 else WAIT_MIXED


def route_stay(free_local: int) -> int:
    """Stay-on-GPU router (baselines): decode where it was prefilled, or wait there."""
    return LOCAL if free_local > 0 else WAIT_LOCAL


def buffer_for_slot(router: int, pool: int) -> int:
    """The buffer whose head (FCFS) takes a decode slot that freed in `pool`.

    Solo-first: either pool serves the one shared buffer. SLI: each pool serves its own.
    Stay-on-GPU: a GPU serves only its own buffer (`pool` is ``LOCAL``). A pool the
    router never places into has no buffer (``NO_BUFFER``).
    """
    if router == ROUTER_SOLO_FIRST:
        return WAIT_SHARED if SOLO <= pool <= MIXED else NO_BUFFER
    if router == ROUTER_SLI:
        if pool == SOLO:
            return WAIT_SOLO
        return WAIT_MIXED if pool == MIXED else NO_BUFFER
    if router == ROUTER_STAY:
        return WAIT_LOCAL if pool == LOCAL else NO_BUFFER
    return NO_BUFFER


def make_gate(deficit: Callable[..., int], priority: Callable[..., int],
              fcfs: Callable[..., int]) -> Callable[..., int]:
    """One gate taking the rule as a code, built from the three gates (Python or compiled).

    The dispatcher is defined once here: `gate` below is it over the Python rules, and
    `compile_rules` builds it over the compiled ones (numba resolves the captured compiled
    functions at compile time).
    """

    def gate(rule: int, waiting: IntArray, running: IntArray, target_x: FloatArray,
             target_qp: FloatArray, rank: OrderArray, head: OrderArray, buffered: int,
             target_buffered: float) -> int:
        if rule == GATE_DEFICIT:
            return deficit(waiting, running, target_x, target_qp, buffered, target_buffered)
        if rule == GATE_PRIORITY:
            return priority(waiting, rank)
        return fcfs(waiting, head)

    return gate


def make_router(solo_first: Callable[..., int], sli: Callable[..., int],
                stay: Callable[..., int]) -> Callable[..., int]:
    """One router taking the rule as a code (see `make_gate`); `u` is read by SLI only."""

    def route(rule: int, p_solo: float, u: float, free_solo: int, free_mixed: int,
              free_local: int) -> int:
        if rule == ROUTER_SLI:
            return sli(p_solo, u, free_solo, free_mixed)
        if rule == ROUTER_SOLO_FIRST:
            return solo_first(free_solo, free_mixed)
        return stay(free_local)

    return route


gate = make_gate(gate_deficit, gate_priority, gate_fcfs)
route = make_router(route_solo_first, route_sli, route_stay)

RULES: tuple[Callable[..., int], ...] = (
    gate_deficit,
    gate_priority,
    gate_fcfs,
    route_solo_first,
    route_sli,
    route_stay,
    buffer_for_slot,
)
"""Every leaf rule, for consumers that compile them all (the tests and the benchmark do)."""

F = TypeVar("F", bound=Callable[..., Any])


def jit(rule: F) -> F:
    """`rule` compiled by numba in nopython mode (imported here: numba is slow to import).

    Compilation happens on the first call with each argument-type signature; the result
    is not cached on disk (no I/O from this package), so compile once per process.
    """
    import numba

    compiled: F = numba.njit(rule)
    return compiled


class CompiledRules(NamedTuple):
    """Every rule compiled, plus the two dispatchers over the compiled rules."""

    gate_deficit: Callable[..., int]
    gate_priority: Callable[..., int]
    gate_fcfs: Callable[..., int]
    route_solo_first: Callable[..., int]
    route_sli: Callable[..., int]
    route_stay: Callable[..., int]
    buffer_for_slot: Callable[..., int]
    gate: Callable[..., int]
    route: Callable[..., int]


@functools.cache
def compile_rules() -> CompiledRules:
    """All rules through `jit`, once per process (compiling costs about a second).

    Memoised because every compiled caller should share one set: a `Controller` built with
    ``compiled=True`` and a simulator's event loop then reuse the same machine code.
    """
    deficit, priority, fcfs, solo_first, sli, stay, buffers = (jit(rule) for rule in RULES)
    return CompiledRules(
        gate_deficit=deficit, gate_priority=priority, gate_fcfs=fcfs,
        route_solo_first=solo_first, route_sli=sli, route_stay=stay, buffer_for_slot=buffers,
        gate=jit(make_gate(deficit, priority, fcfs)),
        route=jit(make_router(solo_first, sli, stay)))
