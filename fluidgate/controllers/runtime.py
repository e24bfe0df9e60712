"""The runtime gate and router: one event interface for a simulator, a harness and a sidecar.

The controller keeps the per-class queues and counts and makes the two decisions of
DESIGN.md §4 with the functions of `rules.py`; it has no clock and does no I/O, so
whoever drives it (a discrete-event simulator, the harness gateway, a sidecar next to a
serving stack) owns time, GPUs and request payloads. The shape follows vLLM's
scheduler: requests are added, the scheduler is asked what to run next when capacity
frees, and it is told when work finishes or leaves.

Lifecycle of one request, by the ticket `on_arrival` hands out::

    on_arrival(cls) -> ticket                      queued for prefill
    next_prefill() -> Admission(ticket, cls)       a prefill slot freed: run this prefill
    prefill_ending(ticket)                         (optional) its engine announced the end:
                                                   the slot is free for the next prefill
    place_decode(ticket, free_solo, free_mixed,    its prefill finished: start the decode
                 free_local=0, gpu=-1) -> Placement    now (SOLO / MIXED / LOCAL) or buffer it
    next_decode(pool, gpu=-1) -> Admission         a decode slot freed in `pool`: run this
    on_finish(ticket)                              its decode finished
    on_abandon(ticket) -> Stage                    it left (patience ran out, or cancelled)

`next_prefill` and `next_decode` return ``None`` when nothing waits. The caller picks
the GPU within a pool (DESIGN.md §4: uniformly among those with a free slot) and tells
the controller only the pools' free-slot counts, because the controller never sees GPUs.
Stay-on-GPU baselines are the exception: their buffers belong to a GPU, named by `gpu`.

Guarantees: deterministic given the events and the seeded `numpy.random.Generator`
(drawn once per placement, and only by the SLI router); O(K) per gate decision, O(1)
amortised for everything else (abandoned requests are dropped lazily from queues).
Misuse — an unknown ticket, a request in the wrong stage — raises `ControllerError`.
Not thread-safe: drive it from one event loop (or behind a lock).
`stats()` reports the counts per class next to the plan's targets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from fluidgate.controllers import rules
from fluidgate.controllers.baselines import GateKind, PolicyName, PolicyPlan, RouterKind, plan_for
from fluidgate.controllers.spec import ControllerSpec


class ControllerError(Exception):
    """The controller was driven out of order (a bug in the caller, not bad traffic)."""


class Pool(IntEnum):
    """Where a decode runs; the `rules` placement codes of the start-now placements."""

    SOLO = rules.SOLO
    MIXED = rules.MIXED
    LOCAL = rules.LOCAL


class Placement(IntEnum):
    """A router's answer: start now in a pool, or wait in a buffer (`rules` codes)."""

    SOLO = rules.SOLO
    MIXED = rules.MIXED
    LOCAL = rules.LOCAL
    WAIT_SHARED = rules.WAIT_SHARED
    WAIT_SOLO = rules.WAIT_SOLO
    WAIT_MIXED = rules.WAIT_MIXED
    WAIT_LOCAL = rules.WAIT_LOCAL

    @property
    def waits(self) -> bool:
        return self.value >= rules.WAIT_SHARED


class Stage(IntEnum):
    QUEUED = 0  # waiting for a prefill slot
    PREFILLING = 1
    BUFFERED = 2  # prefilled, waiting for a decode slot
    DECODING = 3
    ENDING = 4  # prefilling, its end announced: no longer holds a prefill slot


class Admission(NamedTuple):
    ticket: int
    cls: int


@dataclass(frozen=True, slots=True)
class ClassStats:
    """One class now, cluster-wide, next to the plan's targets (`n·x*`, `n·q_p*`, …)."""

    name: str
    waiting: int
    prefilling: int
    buffered: int
    decoding_solo: int
    decoding_mixed: int  # includes stay-on-GPU decodes: every GPU is mixed there
    arrived: int
    admitted: int
    served: int
    abandoned: int
    target_prefilling: float
    target_waiting: float
    target_decoding_solo: float
    target_decoding_mixed: float
    deficit: float | None  # ξ/n = (prefilling − n·x*)/(n·x*); None when n·x* = 0


@dataclass(frozen=True, slots=True)
class ControllerStats:
    plan: PolicyPlan
    classes: tuple[ClassStats, ...]


class _Request:
    __slots__ = ("cls", "stage", "where")

    def __init__(self, cls: int) -> None:
        self.cls = cls
        self.stage = Stage.QUEUED
        self.where = -1  # the pool while decoding, the buffer code while buffered


_PLACEMENTS = tuple(Placement(v) for v in range(len(Placement)))


class Controller:
    """Gate-and-route (or a baseline) for one spec; see the module docstring."""

    def __init__(self, spec: ControllerSpec, plan: PolicyPlan,
                 rng: np.random.Generator | None = None, compiled: bool = False) -> None:
        k = len(spec.classes)
        self.spec = spec
        self.plan = plan
        self._rng = rng
        self._names = tuple(c.name for c in spec.classes)
        # The rules' state: numpy arrays for the compiled rules, lists for the Python ones
        # (the interpreter indexes a list several times faster than an array).
        floats: Callable[[list[float]], rules.FloatArray] = (
            (lambda v: np.array(v, dtype=np.float64)) if compiled else list)
        ints: Callable[[list[int]], rules.IntArray] = (
            (lambda v: np.array(v, dtype=np.int64)) if compiled else list)
        self._target_x = floats([c.targets.prefill for c in spec.classes])
        self._target_qp = floats([c.targets.prefill_queue for c in spec.classes])
        self._rank = ints([c.priority for c in spec.classes])
        self._p_solo = tuple(c.p_solo for c in spec.classes)
        self._waiting = ints([0] * k)
        self._running = ints([0] * k)
        self._head = ints([0] * k)  # oldest live ticket per class queue
        self._queues: list[deque[int]] = [deque() for _ in range(k)]
        self._buffers: dict[int, deque[int]] = {c: deque() for c in (
            rules.WAIT_SHARED, rules.WAIT_SOLO, rules.WAIT_MIXED)}
        self._local: dict[int, deque[int]] = {}  # stay-on-GPU: gpu -> its buffer
        self._requests: dict[int, _Request] = {}
        self._next_ticket = 0
        self._decoding = [[0] * k for _ in Pool]
        self._buffered = [0] * k
        self._arrived = [0] * k
        self._admitted = [0] * k
        self._served = [0] * k
        self._abandoned = [0] * k
        self._gate = self._make_gate(compiled)
        self._route = self._make_router(compiled)

    @classmethod
    def from_spec(cls, spec: ControllerSpec, policy: PolicyName = PolicyName.GATE_AND_ROUTE,
                  rng: np.random.Generator | None = None, compiled: bool = False) -> Controller:
        """A controller running `policy` on `spec`'s cluster; `compiled` uses numba's rules."""
        return cls(spec, plan_for(policy, spec), rng, compiled)

    # -- decisions -----------------------------------------------------------------------

    def _make_gate(self, compiled: bool) -> Callable[[], int]:
        w, r, tx, tq, rank, head = (self._waiting, self._running, self._target_x,
                                    self._target_qp, self._rank, self._head)
        use = rules.compile_rules() if compiled else rules
        if self.plan.gate is GateKind.DEFICIT:
            deficit, buffered = use.gate_deficit, self._buffered
            tqd = float(sum(c.targets.decode_queue for c in self.spec.classes))
            return lambda: deficit(w, r, tx, tq, sum(buffered), tqd)
        if self.plan.gate is GateKind.PRIORITY:
            priority = use.gate_priority
            return lambda: priority(w, rank)
        fcfs = use.gate_fcfs
        return lambda: fcfs(w, head)

    def _make_router(self, compiled: bool) -> Callable[[int, int, int, int], int]:
        use = rules.compile_rules() if compiled else rules
        if self.plan.router is RouterKind.SLI:
            sli, rng, p = use.route_sli, self._rng, self._p_solo
            if rng is None:
                raise ControllerError("the SLI router draws random numbers: pass a seeded "
                                      "numpy Generator (rng=numpy.random.default_rng(seed))")
            return lambda c, fs, fm, fl: sli(p[c], rng.random(), fs, fm)
        if self.plan.router is RouterKind.SOLO_FIRST:
            solo_first = use.route_solo_first
            return lambda c, fs, fm, fl: solo_first(fs, fm)
        stay = use.route_stay
        return lambda c, fs, fm, fl: stay(fl)

    # -- events --------------------------------------------------------------------------

    def on_arrival(self, cls: int) -> int:
        """Queue a class-`cls` request for prefill; returns its ticket (arrival order)."""
        if not 0 <= cls < len(self._names):
            raise ControllerError(f"class {cls} out of range 0..{len(self._names) - 1}")
        ticket = self._next_ticket
        self._next_ticket += 1
        self._requests[ticket] = _Request(cls)
        queue = self._queues[cls]
        if not queue:
            self._head[cls] = ticket
        queue.append(ticket)
        self._waiting[cls] += 1
        self._arrived[cls] += 1
        return ticket

    def next_prefill(self) -> Admission | None:
        """A prefill slot is free: the request to prefill there, or None if none is to run.

        None also when requests wait but the gate holds the slot idle (gate-and-route does
        not admit a class the plan throttles while decodes wait beyond the plan's decode
        queue). Ask again whenever the answer can change: after an arrival, a prefill
        finishing, a buffered decode starting (`next_decode`) or leaving (`on_abandon`).
        """
        cls = self._gate()
        if cls < 0:
            return None
        queue = self._queues[cls]
        ticket = self._pop_live(queue)
        self._pop_dead(queue)
        if queue:
            self._head[cls] = queue[0]
        self._requests[ticket].stage = Stage.PREFILLING
        self._waiting[cls] -= 1
        self._running[cls] += 1
        self._admitted[cls] += 1
        return Admission(ticket, int(cls))

    def prefill_ending(self, ticket: int) -> None:
        """Its engine announced the prefill's end ahead of time and its slot takes the next
        prefill now (a driver whose engines announce; others never call this).

        From here it no longer counts as prefilling, so the gate, asked for that slot,
        sees the prefills that will hold the slots when this one has ended, as a driver
        without the announcement would at the end itself. `place_decode` follows.
        """
        req = self._live(ticket, Stage.PREFILLING)
        req.stage = Stage.ENDING
        self._running[req.cls] -= 1

    def place_decode(self, ticket: int, free_solo: int, free_mixed: int,
                     free_local: int = 0, gpu: int = -1) -> Placement:
        """Its prefill finished: start its decode in a pool now, or buffer it.

        `free_solo`/`free_mixed`: free decode slots in each pool; `free_local`: on the
        GPU that prefilled it, whose index `gpu` names its buffer (stay-on-GPU only).
        """
        req = self._live(ticket, Stage.PREFILLING, Stage.ENDING)
        if gpu < 0 and self.plan.router is RouterKind.STAY:
            raise ControllerError("stay-on-GPU routing needs the prefilling GPU (gpu=...)")
        code = self._route(req.cls, free_solo, free_mixed, free_local)
        if req.stage is Stage.PREFILLING:
            self._running[req.cls] -= 1
        req.where = code
        if code < rules.WAIT_SHARED:
            req.stage = Stage.DECODING
            self._decoding[code][req.cls] += 1
        else:
            req.stage = Stage.BUFFERED
            self._buffered[req.cls] += 1
            if code == rules.WAIT_LOCAL:
                self._local.setdefault(gpu, deque()).append(ticket)
            else:
                self._buffers[code].append(ticket)
        return _PLACEMENTS[code]

    def next_decode(self, pool: Pool, gpu: int = -1) -> Admission | None:
        """A decode slot freed in `pool` (on `gpu` for LOCAL): the buffered decode to run."""
        code = rules.buffer_for_slot(self.plan.router, pool)
        if code == rules.NO_BUFFER:
            return None
        if code == rules.WAIT_LOCAL and gpu < 0:
            raise ControllerError("stay-on-GPU routing needs the GPU whose slot freed (gpu=...)")
        buffer = self._local.get(gpu) if code == rules.WAIT_LOCAL else self._buffers[code]
        if not buffer:
            return None
        ticket = self._pop_live(buffer)
        if ticket < 0:
            return None
        req = self._requests[ticket]
        req.stage = Stage.DECODING
        req.where = pool
        self._buffered[req.cls] -= 1
        self._decoding[pool][req.cls] += 1
        return Admission(ticket, req.cls)

    def on_finish(self, ticket: int) -> None:
        """Its decode finished: the request is served."""
        req = self._live(ticket, Stage.DECODING)
        self._decoding[req.where][req.cls] -= 1
        self._served[req.cls] += 1
        del self._requests[ticket]

    def on_abandon(self, ticket: int) -> Stage:
        """It left (patience ran out, or the client went away); returns the stage it left."""
        req = self._requests.pop(ticket, None)
        if req is None:
            raise ControllerError(f"ticket {ticket} is not in the system")
        c = req.cls
        self._abandoned[c] += 1
        if req.stage is Stage.QUEUED:
            self._waiting[c] -= 1
            queue = self._queues[c]
            if self._head[c] == ticket:
                queue.popleft()
                self._pop_dead(queue)
                if queue:
                    self._head[c] = queue[0]
        elif req.stage is Stage.PREFILLING:
            self._running[c] -= 1
        elif req.stage is Stage.BUFFERED:
            self._buffered[c] -= 1  # its buffer entry is skipped when it reaches the head
        elif req.stage is Stage.DECODING:
            self._decoding[req.where][c] -= 1
        return req.stage

    # -- state ---------------------------------------------------------------------------

    def stats(self) -> ControllerStats:
        rows = []
        for i, spec_cls in enumerate(self.spec.classes):
            t = spec_cls.targets
            running = int(self._running[i])
            rows.append(ClassStats(
                name=self._names[i], waiting=int(self._waiting[i]), prefilling=running,
                buffered=self._buffered[i], decoding_solo=self._decoding[Pool.SOLO][i],
                decoding_mixed=self._decoding[Pool.MIXED][i] + self._decoding[Pool.LOCAL][i],
                arrived=self._arrived[i], admitted=self._admitted[i], served=self._served[i],
                abandoned=self._abandoned[i], target_prefilling=t.prefill,
                target_waiting=t.prefill_queue, target_decoding_solo=t.decodes_solo,
                target_decoding_mixed=t.decodes_mixed,
                deficit=(running - t.prefill) / t.prefill if t.prefill > 0 else None))
        return ControllerStats(plan=self.plan, classes=tuple(rows))

    def _live(self, ticket: int, *stages: Stage) -> _Request:
        req = self._requests.get(ticket)
        if req is None or req.stage not in stages:
            found = "not in the system" if req is None else f"in stage {req.stage.name}"
            raise ControllerError(f"ticket {ticket} is {found}; expected "
                                  + " or ".join(s.name for s in stages))
        return req

    def _pop_live(self, queue: deque[int]) -> int:
        """The first ticket still in the system (abandoned ones are dropped); −1 if none."""
        while queue:
            ticket = queue.popleft()
            if ticket in self._requests:
                return ticket
        return -1

    def _pop_dead(self, queue: deque[int]) -> None:
        while queue and queue[0] not in self._requests:
            queue.popleft()
