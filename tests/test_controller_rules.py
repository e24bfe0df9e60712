"""The decision rules of `controllers/rules.py` pinned on hand-made states, and the same
rules compiled by numba agreeing with the Python ones on random states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fluidgate.controllers import rules as r


def ints(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def floats(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


# -- occupancy-deficit gate -----------------------------------------------------------------

def unbuffered(waiting: np.ndarray, running: np.ndarray, target_x: np.ndarray,
               target_qp: np.ndarray) -> int:
    """The deficit gate with no decode waiting and a plan that lets none wait."""
    return r.gate_deficit(waiting, running, target_x, target_qp, 0, 0.0)


def test_deficit_admits_the_class_furthest_below_its_target() -> None:
    # ξ = (X − T)/T: class 0 (2 − 4)/4 = −0.5, class 1 (1 − 4)/4 = −0.75, class 2 (0 − 1)/1 = −1
    assert unbuffered(ints(1, 1, 1), ints(2, 1, 0), floats(4, 4, 1), floats(0, 0, 0)) == 2
    # relative, not absolute: class 0 is 3 GPUs short of 10 (ξ = −0.3), class 1 one short of 2
    assert unbuffered(ints(1, 1), ints(7, 1), floats(10, 2), floats(0, 0)) == 1


def test_deficit_skips_classes_with_nobody_waiting() -> None:
    assert unbuffered(ints(0, 3), ints(0, 5), floats(4, 1), floats(0, 0)) == 1


def test_deficit_tie_goes_to_the_largest_queue_excess_then_the_lowest_index() -> None:
    # both ξ = −1: excess 5 − 1 = 4 beats 2 − 0 = 2
    assert unbuffered(ints(2, 5), ints(0, 0), floats(3, 7), floats(0, 1)) == 1
    # the excess is measured against n·q_p*: 5 − 4.5 = 0.5 loses to 2 − 0 = 2
    assert unbuffered(ints(2, 5), ints(0, 0), floats(3, 7), floats(0, 4.5)) == 0
    # equal ξ and equal excess: the lowest index
    assert unbuffered(ints(3, 3, 3), ints(1, 2, 1), floats(2, 4, 2), floats(1, 1, 1)) == 0


def test_deficit_zero_target_waits_behind_every_positive_target() -> None:
    # class 0 has no planned capacity: even far over target, class 1 goes first
    assert unbuffered(ints(9, 1), ints(0, 50), floats(0, 2), floats(0, 0)) == 1
    # ... and it is admitted when it is the only class waiting (work-conserving)
    assert unbuffered(ints(9, 0), ints(0, 50), floats(0, 2), floats(0, 0)) == 0
    # between zero-target classes: largest queue excess
    assert unbuffered(ints(1, 4), ints(0, 0), floats(0, 0), floats(0, 0)) == 1


def test_deficit_holds_a_throttled_class_while_decodes_wait_beyond_the_plan() -> None:
    # class 0 is throttled (n·q_p* = 3 > 0) and furthest below target (ξ = −1 vs −0.5),
    # class 1 fully admitted (n·q_p* = 0). Nothing buffered: class 0, as before.
    x, q = floats(2, 4), floats(3, 0)
    assert unbuffered(ints(5, 1), ints(0, 2), x, q) == 0
    # one decode waits and the plan lets none wait: class 0 is held back, class 1 goes
    assert r.gate_deficit(ints(5, 1), ints(0, 2), x, q, 1, 0.0) == 1
    # ... even far over its own target: the fully admitted class is never held back
    assert r.gate_deficit(ints(5, 1), ints(0, 40), x, q, 7, 0.0) == 1
    # only the throttled class waits: the slot stays idle although a request waits
    assert r.gate_deficit(ints(5, 0), ints(0, 2), x, q, 1, 0.0) == r.NO_CLASS
    # a plan with a decode queue (n·Σq_d* = 2.5): 2 buffered is within it, 3 is beyond
    assert r.gate_deficit(ints(5, 0), ints(0, 2), x, q, 2, 2.5) == 0
    assert r.gate_deficit(ints(5, 0), ints(0, 2), x, q, 3, 2.5) == r.NO_CLASS
    # no class throttled: buffered decodes change nothing (the gate stays work-conserving)
    assert r.gate_deficit(ints(5, 0), ints(0, 2), x, floats(0, 0), 9, 0.0) == 0


def test_deficit_returns_no_class_when_all_queues_are_empty() -> None:
    assert unbuffered(ints(0, 0), ints(3, 0), floats(1, 1), floats(0, 0)) == r.NO_CLASS
    empty = np.zeros(0, dtype=np.int64)
    assert r.gate_deficit(empty, empty, floats(), floats(), 0, 0.0) == r.NO_CLASS


# -- static-priority and FCFS gates ---------------------------------------------------------

def test_priority_admits_the_waiting_class_with_the_best_rank() -> None:
    rank = ints(2, 3, 1)  # class 2 has rank 1 (largest D/P), then class 0, then class 1
    assert r.gate_priority(ints(4, 4, 1), rank) == 2
    assert r.gate_priority(ints(4, 4, 0), rank) == 0
    assert r.gate_priority(ints(0, 4, 0), rank) == 1
    assert r.gate_priority(ints(0, 0, 0), rank) == r.NO_CLASS
    assert r.gate_priority(ints(1, 1), ints(1, 1)) == 0  # equal ranks: the lowest index


def test_fcfs_admits_the_class_whose_head_arrived_first() -> None:
    # class 1's head ticket is oldest, but class 1 is empty (its ticket is stale): class 2
    assert r.gate_fcfs(ints(1, 0, 2), ints(7, 1, 4)) == 2
    assert r.gate_fcfs(ints(1, 1, 2), ints(7, 1, 4)) == 1
    assert r.gate_fcfs(ints(0, 0, 0), ints(7, 1, 4)) == r.NO_CLASS
    # arrival times work as well as tickets; equal heads go to the lowest index
    assert r.gate_fcfs(ints(1, 1, 1), floats(2.5, 0.5, 0.5)) == 1


# -- routers --------------------------------------------------------------------------------

@pytest.mark.parametrize(("free_solo", "free_mixed", "expected"), [
    (3, 2, r.SOLO), (1, 0, r.SOLO), (0, 5, r.MIXED), (0, 0, r.WAIT_SHARED)])
def test_solo_first(free_solo: int, free_mixed: int, expected: int) -> None:
    assert r.route_solo_first(free_solo, free_mixed) == expected


@pytest.mark.parametrize(("p", "u", "free_solo", "free_mixed", "expected"), [
    (0.3, 0.29, 1, 1, r.SOLO), (0.3, 0.3, 1, 1, r.MIXED),
    (0.3, 0.1, 0, 5, r.WAIT_SOLO),  # the pool is kept even though mixed has room
    (0.3, 0.9, 5, 0, r.WAIT_MIXED),
    (1.0, 0.999999, 1, 0, r.SOLO), (0.0, 0.0, 1, 1, r.MIXED)])
def test_sli_router(p: float, u: float, free_solo: int, free_mixed: int, expected: int) -> None:
    assert r.route_sli(p, u, free_solo, free_mixed) == expected


def test_stay_router_and_buffers() -> None:
    assert r.route_stay(1) == r.LOCAL
    assert r.route_stay(0) == r.WAIT_LOCAL
    assert r.buffer_for_slot(r.ROUTER_SOLO_FIRST, r.SOLO) == r.WAIT_SHARED
    assert r.buffer_for_slot(r.ROUTER_SOLO_FIRST, r.MIXED) == r.WAIT_SHARED
    assert r.buffer_for_slot(r.ROUTER_SLI, r.SOLO) == r.WAIT_SOLO
    assert r.buffer_for_slot(r.ROUTER_SLI, r.MIXED) == r.WAIT_MIXED
    assert r.buffer_for_slot(r.ROUTER_STAY, r.LOCAL) == r.WAIT_LOCAL
    assert r.buffer_for_slot(r.ROUTER_STAY, r.SOLO) == r.NO_BUFFER
    assert r.buffer_for_slot(r.ROUTER_SLI, r.LOCAL) == r.NO_BUFFER


# -- one definition, compiled ---------------------------------------------------------------

def _random_calls(rule: Callable[..., int], rng: np.random.Generator) -> list[tuple[Any, ...]]:
    """Arguments for `rule`: small integers so that ties and empty queues are common."""
    calls: list[tuple[Any, ...]] = []
    for _ in range(300):
        k = int(rng.integers(0, 6))
        waiting = rng.integers(0, 3, k).astype(np.int64)
        running = rng.integers(0, 4, k).astype(np.int64)
        target_x = rng.integers(0, 3, k).astype(np.float64)
        target_qp = rng.integers(0, 2, k).astype(np.float64) * 0.5
        free = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
        calls.append({
            "gate_deficit": (waiting, running, target_x, target_qp, int(rng.integers(0, 3)),
                             float(rng.integers(0, 2))),
            "gate_priority": (waiting, rng.integers(1, 4, k).astype(np.int64)),
            "gate_fcfs": (waiting, rng.integers(0, 3, k).astype(np.float64)),
            "route_solo_first": free,
            "route_sli": (float(rng.integers(0, 3)) / 2, float(rng.random()), *free),
            "route_stay": (free[0],),
            "buffer_for_slot": (int(rng.integers(-1, 4)), int(rng.integers(-1, 4))),
        }[rule.__name__])
    return calls


@pytest.mark.parametrize("rule", r.RULES, ids=lambda f: f.__name__)
def test_numba_compiles_each_rule_unchanged_and_agrees(rule: Callable[..., int]) -> None:
    compiled = r.jit(rule)
    rng = np.random.default_rng(8)
    for args in _random_calls(rule, rng):
        assert compiled(*args) == rule(*args), (rule.__name__, args)


def test_dispatchers_run_the_named_rule_in_python_and_compiled() -> None:
    compiled = r.compile_rules()
    rng = np.random.default_rng(9)
    for _ in range(200):
        k = int(rng.integers(0, 5))
        state = (rng.integers(0, 3, k).astype(np.int64), rng.integers(0, 4, k).astype(np.int64),
                 rng.integers(0, 3, k).astype(np.float64), rng.integers(0, 2, k) * 0.5)
        rank, head = rng.integers(1, 4, k), rng.random(k)
        buffered = (int(rng.integers(0, 3)), float(rng.integers(0, 2)))
        expected = {r.GATE_DEFICIT: r.gate_deficit(*state, *buffered),
                    r.GATE_PRIORITY: r.gate_priority(state[0], rank),
                    r.GATE_FCFS: r.gate_fcfs(state[0], head)}
        for rule, want in expected.items():
            assert r.gate(rule, *state, rank, head, *buffered) == want
            assert compiled.gate(rule, *state, rank, head, *buffered) == want
        p, u = float(rng.integers(0, 3)) / 2, float(rng.random())
        free = tuple(int(v) for v in rng.integers(0, 2, 3))
        routes = {r.ROUTER_SLI: r.route_sli(p, u, free[0], free[1]),
                  r.ROUTER_SOLO_FIRST: r.route_solo_first(free[0], free[1]),
                  r.ROUTER_STAY: r.route_stay(free[2])}
        for rule, want in routes.items():
            assert r.route(rule, p, u, *free) == want
            assert compiled.route(rule, p, u, *free) == want
