"""The `ctmc` model of gate-and-route written the way a Python user would, with SimPy.

One process per arrival stream, per waiting request (its patience), per prefill and per
decode; the decisions are `fluidgate.controllers.rules` called from Python. A decode's rate
depends on whether its GPU is running a prefill, so a GPU that starts or finishes a prefill
interrupts its decodes and they redraw their remaining time (exponential service is
memoryless, so this is the same CTMC as `fluidgate.simulator.ctmc`). Used only by
`bench/simulator.py` as the speed reference and as an independent check of the revenue.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from fluidgate.controllers import rules


@dataclass
class Req:
    cls: int
    arrival: float
    state: str = "waiting"  # waiting, prefill, buffered, decode, gone


@dataclass
class Gpu:
    index: int
    mixed: bool
    prefill: Req | None = None
    decodes: list[Any] = field(default_factory=list)  # SimPy processes


class FreeSet:
    """GPUs with a free slot: O(1) add, remove and uniform choice (swap-remove list)."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.where: dict[int, int] = {}

    def add(self, g: int) -> None:
        if g not in self.where:
            self.where[g] = len(self.items)
            self.items.append(g)

    def discard(self, g: int) -> None:
        k = self.where.pop(g, None)
        if k is not None:
            last = self.items.pop()
            if last != g:
                self.items[k] = last
                self.where[last] = k

    def choice(self, rng: random.Random) -> int:
        return self.items[rng.randrange(len(self.items))]


class SimpyCtmc:
    def __init__(self, lam: list[float], theta: list[float], mu_p: list[float],
                 mu_m: list[float], mu_s: list[float], price: list[float], target_x: list[float],
                 target_q: list[float], n: int, mixed: int, batch: int, seed: int) -> None:
        self.env = simpy.Environment()
        self.rng = random.Random(seed)
        self.lam, self.theta, self.mu_p, self.mu_m, self.mu_s = lam, theta, mu_p, mu_m, mu_s
        self.price = price
        self.tx = np.array(target_x)
        self.tq = np.array(target_q)
        self.k = len(lam)
        self.batch = batch
        self.gpus = [Gpu(g, mixed=g < mixed) for g in range(n)]
        self.free_solo, self.free_mixed, self.free_prefill = FreeSet(), FreeSet(), FreeSet()
        for g in self.gpus:
            self.refresh(g)
        self.queues: list[deque[Req]] = [deque() for _ in range(self.k)]
        self.buffer: deque[Req] = deque()
        self.running = np.zeros(self.k, np.int64)
        self.events = 0
        self.revenue = 0.0
        self.warmup = 0.0

    # --- processes ---------------------------------------------------------------------

    def arrivals(self, c: int) -> Any:
        while True:
            yield self.env.timeout(self.rng.expovariate(self.lam[c]))
            self.events += 1
            req = Req(c, self.env.now)
            self.queues[c].append(req)
            self.env.process(self.patience(req))
            self.admit()

    def patience(self, req: Req) -> Any:
        if self.theta[req.cls] <= 0:
            return
        yield self.env.timeout(self.rng.expovariate(self.theta[req.cls]))
        if req.state == "waiting":
            self.queues[req.cls].remove(req)
            req.state = "gone"
            self.events += 1
        elif req.state == "buffered":
            self.buffer.remove(req)
            req.state = "gone"
            self.events += 1
            self.admit()  # a shorter decode buffer can reopen the gate

    def prefill(self, g: Gpu, req: Req) -> Any:
        yield self.env.timeout(self.rng.expovariate(self.mu_p[req.cls]))
        self.events += 1
        g.prefill = None
        self.refresh(g)
        self.running[req.cls] -= 1
        self.interrupt_decodes(g)
        where = rules.route_solo_first(len(self.free_solo.items), len(self.free_mixed.items))
        if where == rules.SOLO:
            self.start_decode(self.gpus[self.free_solo.choice(self.rng)], req)
        elif where == rules.MIXED:
            self.start_decode(self.gpus[self.free_mixed.choice(self.rng)], req)
        else:
            req.state = "buffered"
            self.buffer.append(req)
            if self.theta[req.cls] > 0:
                self.env.process(self.patience(req))
        self.admit()

    def decode(self, g: Gpu, req: Req) -> Any:
        while True:
            rate = self.mu_m[req.cls] if g.prefill is not None else self.mu_s[req.cls]
            try:
                yield self.env.timeout(self.rng.expovariate(rate))
                break
            except simpy.Interrupt:
                continue
        self.events += 1
        g.decodes.remove(self.env.active_process)
        self.refresh(g)
        req.state = "gone"
        if self.env.now >= self.warmup:
            self.revenue += self.price[req.cls]
        if self.buffer:
            self.start_decode(g, self.buffer.popleft())
            self.admit()

    # --- decisions ---------------------------------------------------------------------

    def refresh(self, g: Gpu) -> None:
        room = len(g.decodes) < (self.batch - 1 if g.mixed else self.batch)
        pool = self.free_mixed if g.mixed else self.free_solo
        if room:
            pool.add(g.index)
        else:
            pool.discard(g.index)
        if g.mixed and g.prefill is None:
            self.free_prefill.add(g.index)
        else:
            self.free_prefill.discard(g.index)

    def start_decode(self, g: Gpu, req: Req) -> None:
        req.state = "decode"
        g.decodes.append(self.env.process(self.decode(g, req)))
        self.refresh(g)

    def interrupt_decodes(self, g: Gpu) -> None:
        for p in g.decodes:
            if p.is_alive and p is not self.env.active_process:
                p.interrupt()

    def admit(self) -> None:
        waiting = np.array([len(q) for q in self.queues], np.int64)
        while self.free_prefill.items and waiting.sum() > 0:
            # the plan of the reference instance lets no decode wait (n·q_d* = 0)
            c = rules.gate_deficit(waiting, self.running, self.tx, self.tq, len(self.buffer),
                                   0.0)
            if c == rules.NO_CLASS:  # the gate holds the slot idle
                break
            req = self.queues[c].popleft()
            waiting[c] -= 1
            g = self.gpus[self.free_prefill.choice(self.rng)]
            req.state = "prefill"
            g.prefill = req
            self.refresh(g)
            self.running[c] += 1
            self.interrupt_decodes(g)
            self.env.process(self.prefill(g, req))

    def run(self, warmup: float, until: float) -> tuple[int, float]:
        """Events in the whole run, and revenue per GPU per s after the warm-up."""
        self.warmup = warmup
        for c in range(self.k):
            self.env.process(self.arrivals(c))
        self.env.run(until=until)
        return self.events, self.revenue / (len(self.gpus) * (until - warmup))
