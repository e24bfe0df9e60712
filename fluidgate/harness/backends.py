"""The gateway's view of its engines: which are up and how many slots each has free.

The controller sees only pools and free-slot counts (`controllers.runtime`); the gateway
owns the GPUs, so it keeps per engine one prefill slot (mixed engines) and its decode slots
(`B − 1` on a mixed engine, `B` on a solo one, as the static plan and the simulator count
them), picks uniformly among the engines of a pool with a free slot (DESIGN.md §4), and
leaves a dead engine out of every count until a health check finds it back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fluidgate.controllers.runtime import Pool


@dataclass(eq=False, slots=True)
class Backend:
    url: str
    pool: Pool
    decode_slots: int
    up: bool = True
    prefilling: bool = False
    decoding: int = 0
    bootstrap_port: int = 0  # SGLang handoff: the KV bootstrap port of a mixed engine

    @property
    def free_decode(self) -> int:
        return self.decode_slots - self.decoding if self.up else 0

    @property
    def free_prefill(self) -> bool:
        return self.up and self.pool is Pool.MIXED and not self.prefilling


class Backends:
    def __init__(self, mixed: list[str], solo: list[str], max_batch: int,
                 rng: np.random.Generator) -> None:
        self.all = ([Backend(u.rstrip("/"), Pool.MIXED, max_batch - 1) for u in mixed]
                    + [Backend(u.rstrip("/"), Pool.SOLO, max_batch) for u in solo])
        self._rng = rng

    def free_decode(self, pool: Pool) -> int:
        return sum(b.free_decode for b in self.all if b.pool is pool)

    def prefill_engine(self) -> Backend | None:
        free = [b for b in self.all if b.free_prefill]
        return free[int(self._rng.integers(len(free)))] if free else None

    def decode_engine(self, pool: Pool) -> Backend | None:
        free = [b for b in self.all if b.pool is pool and b.free_decode > 0]
        return free[int(self._rng.integers(len(free)))] if free else None

    def any_prefill_up(self) -> bool:
        return any(b.up and b.pool is Pool.MIXED for b in self.all)
