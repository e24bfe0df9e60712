"""Module-level task functions for the executor tests (worker processes import them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit

from fluidgate.simulator.jitcache import ensure_compiled


def square(x: int) -> int:
    return x * x


def refuse_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is refused")
    return x


def count_up(n: int, tick: Callable[[], None]) -> int:
    """`n` units of work, each reported as it is done."""
    for _ in range(n):
        tick()
    return n


def wait_for_sibling(item: tuple[int, str]) -> int:
    """Item 0 finishes only after item 1 has (item 1 leaves a file behind): a fixed finishing
    order without timing assumptions."""
    index, folder = item
    flag = Path(folder) / "second-done"
    if index == 1:
        flag.touch()
        return index
    deadline = time.monotonic() + 120
    while not flag.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the sibling task never ran")
        time.sleep(0.01)
    return index


@njit(cache=True)
def _add_one(a):  # type: ignore[no-untyped-def]
    return a + 1.0


def compile_at(start: float) -> tuple[int, int]:
    """Wait until wall-clock `start` (so that workers reach the compile together), then make
    `_add_one` ready; returns this process's (cache hits, cache misses)."""
    while time.time() < start:
        time.sleep(0.005)
    ensure_compiled(_add_one, (np.zeros(3),))
    stats = _add_one.stats
    return sum(stats.cache_hits.values()), sum(stats.cache_misses.values())
