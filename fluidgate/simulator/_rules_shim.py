"""TEMPORARY stand-in for `fluidgate.controllers.rules` until the runtime branch lands.

Deleted when `controllers/rules.py` reaches main: the simulator must call that module's
decision functions, not these.
"""

from __future__ import annotations

import math

from numba import njit

GATE_FCFS, GATE_DEFICIT, GATE_PRIORITY = 0, 1, 2
ROUTE_STAY, ROUTE_SOLO_FIRST, ROUTE_SLI, ROUTE_ANY = 0, 1, 2, 3
TO_SOLO, TO_MIXED, BUFFER_SOLO, BUFFER_MIXED = 0, 1, 2, 3


@njit(cache=True)
def gate_pick(rule, waiting, running, target_x, target_q, head_arrival, rank):  # type: ignore[no-untyped-def]
    best = -1
    best_key = math.inf
    best_tie = -math.inf
    for i in range(waiting.shape[0]):
        if waiting[i] <= 0:
            continue
        if rule == GATE_FCFS:
            key = head_arrival[i]
            tie = 0.0
        elif rule == GATE_PRIORITY:
            key = float(rank[i])
            tie = 0.0
        else:
            key = (running[i] - target_x[i]) / target_x[i] if target_x[i] > 0 else math.inf
            tie = waiting[i] - target_q[i]
        if best < 0 or key < best_key or (key == best_key and tie > best_tie):
            best, best_key, best_tie = i, key, tie
    return best


@njit(cache=True)
def route_pool(rule, p_solo, u, free_solo, free_mixed):  # type: ignore[no-untyped-def]
    if rule == ROUTE_SLI:
        if u < p_solo:
            return TO_SOLO if free_solo > 0 else BUFFER_SOLO
        return TO_MIXED if free_mixed > 0 else BUFFER_MIXED
    if free_solo > 0:
        return TO_SOLO
    if free_mixed > 0:
        return TO_MIXED
    return BUFFER_SOLO
