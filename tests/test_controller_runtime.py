"""The runtime `Controller`: the lifecycle of requests through gate, router and buffers,
pinned on hand-made specs, for gate-and-route and each baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fluidgate.controllers.baselines import GateKind, PolicyName, RouterKind, plan_for
from fluidgate.controllers.runtime import Controller, ControllerError, Placement, Pool, Stage
from fluidgate.controllers.spec import GateRule, RouterRule
from tests.controller_specs import Cls, make_spec

TWO = make_spec([Cls(prefill=1.0), Cls(prefill=3.0)])


def admit_all(c: Controller) -> list[tuple[int, int]]:
    out = []
    while (a := c.next_prefill()) is not None:
        out.append((a.ticket, a.cls))
    return out


def test_deficit_gate_sequence_by_hand() -> None:
    c = Controller.from_spec(TWO)
    for i in range(6):
        c.on_arrival(i % 2)  # tickets 0, 2, 4 are class 0; 1, 3, 5 class 1
    # ξ: (0−1)/1 = (0−3)/3 = −1, tie, equal excess 3 → class 0; then class 0 at ξ = 0 and
    # class 1 at −1, −2/3, −1/3 → class 1 three times; then class 0 (ξ 0 < class-1 empty)
    assert admit_all(c) == [(0, 0), (1, 1), (3, 1), (5, 1), (2, 0), (4, 0)]
    assert c.next_prefill() is None


def test_deficit_gate_holds_a_throttled_class_while_a_decode_waits() -> None:
    # class 0 is throttled by the plan (n·q_p* = 2 > 0), class 1 fully admitted (n·q_p* = 0);
    # the plan lets no decode wait (n·q_d* = 0)
    c = Controller.from_spec(make_spec([Cls(prefill=1.0, prefill_queue=2.0), Cls(prefill=3.0)]))
    first = c.on_arrival(0)
    assert c.next_prefill() == (first, 0)
    assert c.place_decode(first, free_solo=0, free_mixed=0) is Placement.WAIT_SHARED
    later = [c.on_arrival(0) for _ in range(4)]
    late1 = c.on_arrival(1)
    # both ξ = −1 and class 0 has the larger queue excess (4 − 2 > 1 − 0), so a
    # work-conserving gate would take it; with a decode waiting it is not eligible
    assert c.next_prefill() == (late1, 1)
    # only the throttled class waits: the slot stays idle, four requests still queued
    assert c.next_prefill() is None
    assert c.stats().classes[0].waiting == 4
    # a decode slot takes the buffered decode: nothing waits to decode, the gate reopens
    assert c.next_decode(Pool.SOLO) == (first, 0)
    assert c.next_prefill() == (later[0], 0)
    # buffered again, then cancelled from the buffer: the gate reopens as well
    assert c.place_decode(later[0], free_solo=0, free_mixed=0) is Placement.WAIT_SHARED
    assert c.next_prefill() is None
    assert c.on_abandon(later[0]) is Stage.BUFFERED
    assert c.next_prefill() == (later[1], 0)


def test_an_announced_prefill_end_frees_its_slot_for_the_gate() -> None:
    # A class-0 and a class-1 prefill hold the two slots; one of each class waits. The
    # class-0 engine announces its end, and the gate is asked for that slot: it must see
    # what it would see at the end itself, class 0 at ξ = (0−1)/1 = −1 against class 1 at
    # (1−3)/3 = −2/3, so class 0. Counting the ending prefill would give class 0 ξ = 0 and
    # hand the slot to class 1.
    c = Controller.from_spec(TWO)
    a, b = c.on_arrival(0), c.on_arrival(1)
    assert admit_all(c) == [(a, 0), (b, 1)]
    w0, w1 = c.on_arrival(0), c.on_arrival(1)
    c.prefill_ending(a)
    assert [s.prefilling for s in c.stats().classes] == [0, 1]
    assert c.next_prefill() == (w0, 0)
    # its decode is placed when it ends, without counting it out of the prefills again
    assert c.place_decode(a, free_solo=1, free_mixed=0) is Placement.SOLO
    assert [s.prefilling for s in c.stats().classes] == [1, 1]
    # an ending prefill whose engine fails leaves without touching the prefill counts
    c.prefill_ending(b)
    assert c.on_abandon(b) is Stage.ENDING
    assert [s.prefilling for s in c.stats().classes] == [1, 0]
    assert c.next_prefill() == (w1, 1)
    with pytest.raises(ControllerError, match="expected PREFILLING"):
        c.prefill_ending(b)


def test_priority_gate_follows_the_rank_not_the_arrival_order() -> None:
    spec = make_spec([Cls(1.0, priority=2), Cls(1.0, priority=1)],
                     gate=GateRule.STATIC_PRIORITY)
    c = Controller.from_spec(spec)
    c.on_arrival(0)
    c.on_arrival(1)
    c.on_arrival(0)
    assert admit_all(c) == [(1, 1), (0, 0), (2, 0)]


def test_fcfs_gate_and_abandonment_at_the_head() -> None:
    c = Controller.from_spec(TWO, PolicyName.FI_WSP)
    t = [c.on_arrival(k) for k in (0, 1, 0, 1)]
    assert c.on_abandon(t[0]) is Stage.QUEUED  # the oldest leaves: class 0's head moves to t2
    assert c.on_abandon(t[3]) is Stage.QUEUED  # a middle one leaves: dropped lazily
    assert admit_all(c) == [(t[1], 1), (t[2], 0)]
    s = c.stats().classes
    assert (s[0].arrived, s[0].admitted, s[0].abandoned, s[0].waiting) == (2, 1, 1, 0)
    assert (s[1].arrived, s[1].admitted, s[1].abandoned, s[1].waiting) == (2, 1, 1, 0)


def test_fcfs_head_skips_a_request_that_left_behind_the_admitted_one() -> None:
    c = Controller.from_spec(TWO, PolicyName.FG_SP)
    a, b, later = c.on_arrival(0), c.on_arrival(0), c.on_arrival(1)
    c.on_abandon(b)  # not the head: stays in the deque until reached
    assert c.next_prefill() == (a, 0)
    assert c.next_prefill() == (later, 1)  # class 0 is empty; its stale head is not used
    assert c.next_prefill() is None


def test_solo_first_router_and_the_shared_fcfs_buffer() -> None:
    c = Controller.from_spec(TWO)
    tickets = [c.on_arrival(1) for _ in range(4)]
    admit_all(c)
    assert c.place_decode(tickets[0], free_solo=2, free_mixed=1) is Placement.SOLO
    assert c.place_decode(tickets[1], free_solo=0, free_mixed=1) is Placement.MIXED
    assert c.place_decode(tickets[2], free_solo=0, free_mixed=0) is Placement.WAIT_SHARED
    assert c.place_decode(tickets[3], free_solo=0, free_mixed=0) is Placement.WAIT_SHARED
    # a solo slot frees: the buffer's head (FCFS) takes it; then a mixed slot takes the next
    assert c.next_decode(Pool.SOLO) == (tickets[2], 1)
    assert c.next_decode(Pool.MIXED) == (tickets[3], 1)
    assert c.next_decode(Pool.MIXED) is None
    s = c.stats().classes[1]
    assert (s.decoding_solo, s.decoding_mixed, s.buffered, s.prefilling) == (2, 2, 0, 0)
    for t in tickets:
        c.on_finish(t)
    assert c.stats().classes[1].served == 4


def test_abandoned_buffered_decode_is_skipped() -> None:
    c = Controller.from_spec(TWO)
    t = [c.on_arrival(0) for _ in range(3)]
    admit_all(c)
    for x in t:
        assert c.place_decode(x, 0, 0) is Placement.WAIT_SHARED
    assert c.on_abandon(t[0]) is Stage.BUFFERED
    assert c.next_decode(Pool.SOLO) == (t[1], 0)
    assert c.on_abandon(t[2]) is Stage.BUFFERED
    assert c.next_decode(Pool.SOLO) is None
    s = c.stats().classes[0]
    assert (s.buffered, s.decoding_solo, s.abandoned) == (0, 1, 2)


def test_sli_router_keeps_a_buffer_per_pool() -> None:
    spec = make_spec([Cls(1.0, p_solo=1.0), Cls(1.0, p_solo=0.0)], router=RouterRule.SLI_SPLIT)
    c = Controller.from_spec(spec, rng=np.random.default_rng(1))
    solo, mixed = c.on_arrival(0), c.on_arrival(1)
    admit_all(c)
    assert c.place_decode(solo, free_solo=0, free_mixed=9) is Placement.WAIT_SOLO
    assert c.place_decode(mixed, free_solo=9, free_mixed=0) is Placement.WAIT_MIXED
    assert c.next_decode(Pool.MIXED) == (mixed, 1)  # a mixed slot never takes the solo buffer
    assert c.next_decode(Pool.MIXED) is None
    assert c.next_decode(Pool.SOLO) == (solo, 0)


def test_sli_router_splits_with_probability_p_solo() -> None:
    p, n = 0.3, 20_000
    spec = make_spec([Cls(1.0, p_solo=p)], router=RouterRule.SLI_SPLIT)
    c = Controller.from_spec(spec, rng=np.random.default_rng(20261202))
    solo = 0
    for _ in range(n):
        t = c.on_arrival(0)
        c.next_prefill()
        placement = c.place_decode(t, free_solo=1, free_mixed=1)
        solo += placement is Placement.SOLO
        c.on_finish(t)
    sd = math.sqrt(n * p * (1 - p))  # binomial: 64.8 here
    assert abs(solo - n * p) <= 4 * sd


def test_same_seed_same_decisions() -> None:
    spec = make_spec([Cls(1.0, p_solo=0.5), Cls(2.0, p_solo=0.2)], router=RouterRule.SLI_SPLIT)

    def run(seed: int) -> list[Placement]:
        c = Controller.from_spec(spec, rng=np.random.default_rng(seed))
        out = []
        for k in range(200):
            t = c.on_arrival(k % 2)
            c.next_prefill()
            out.append(c.place_decode(t, 1, 1))
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_stay_on_gpu_buffers_per_gpu() -> None:
    c = Controller.from_spec(TWO, PolicyName.GI_WSP)
    t = [c.on_arrival(0) for _ in range(3)]
    admit_all(c)
    assert c.place_decode(t[0], 0, 0, free_local=1, gpu=4) is Placement.LOCAL
    assert c.place_decode(t[1], 5, 5, free_local=0, gpu=4) is Placement.WAIT_LOCAL
    assert c.place_decode(t[2], 5, 5, free_local=0, gpu=7) is Placement.WAIT_LOCAL
    assert c.next_decode(Pool.LOCAL, gpu=7) == (t[2], 0)
    assert c.next_decode(Pool.LOCAL, gpu=7) is None
    assert c.next_decode(Pool.MIXED) is None  # no pool-wide buffer under stay-on-GPU
    assert c.next_decode(Pool.LOCAL, gpu=4) == (t[1], 0)
    assert c.stats().classes[0].decoding_mixed == 3


@pytest.mark.parametrize("pricing_gate", [GateRule.OCCUPANCY_DEFICIT, GateRule.STATIC_PRIORITY])
def test_policy_plans(pricing_gate: GateRule) -> None:
    spec = make_spec([Cls(1.0), Cls(2.0)], gate=pricing_gate, router=RouterRule.SLI_SPLIT,
                     gpus=10, mixed=4)
    gate = GateKind.DEFICIT if pricing_gate is GateRule.OCCUPANCY_DEFICIT else GateKind.PRIORITY
    expected = {
        PolicyName.GATE_AND_ROUTE: (gate, RouterKind.SLI, 4, 6),
        PolicyName.FI_WSP: (GateKind.FCFS, RouterKind.STAY, 10, 0),
        PolicyName.GI_WSP: (gate, RouterKind.STAY, 10, 0),
        PolicyName.GF_WSP: (gate, RouterKind.SOLO_FIRST, 10, 0),
        PolicyName.FG_SP: (GateKind.FCFS, RouterKind.SOLO_FIRST, 4, 6),
    }
    for policy, (g, r, mixed, solo) in expected.items():
        plan = plan_for(policy, spec)
        assert (plan.gate, plan.router, plan.mixed_gpus, plan.solo_gpus) == (g, r, mixed, solo)


def test_stats_against_targets_and_zero_target() -> None:
    spec = make_spec([Cls(prefill=0.0), Cls(prefill=4.0, prefill_queue=1.5)])
    c = Controller.from_spec(spec)
    c.on_arrival(0)
    c.on_arrival(1)
    assert admit_all(c) == [(1, 1), (0, 0)]  # the zero-target class only once nobody else waits
    s = c.stats().classes
    assert s[0].deficit is None
    assert s[1].deficit == pytest.approx((1 - 4.0) / 4.0)
    assert (s[1].target_prefilling, s[1].target_waiting) == (4.0, 1.5)


def test_misuse_is_an_error_in_words() -> None:
    c = Controller.from_spec(TWO)
    with pytest.raises(ControllerError, match="class 2 out of range"):
        c.on_arrival(2)
    t = c.on_arrival(0)
    with pytest.raises(ControllerError, match="expected PREFILLING"):
        c.place_decode(t, 1, 1)
    with pytest.raises(ControllerError, match="not in the system"):
        c.on_finish(99)
    with pytest.raises(ControllerError, match="not in the system"):
        c.on_abandon(99)
    sli = make_spec([Cls(1.0)], router=RouterRule.SLI_SPLIT)
    with pytest.raises(ControllerError, match="seeded"):
        Controller.from_spec(sli)
    stay = Controller.from_spec(TWO, PolicyName.FI_WSP)
    t = stay.on_arrival(0)
    stay.next_prefill()
    with pytest.raises(ControllerError, match="gpu"):
        stay.place_decode(t, 1, 1, free_local=1)
    with pytest.raises(ControllerError, match="gpu"):
        stay.next_decode(Pool.LOCAL)
    assert stay.stats().classes[0].prefilling == 1  # the refused call changed nothing


def _drive(c: Controller, seed: int, events: int = 3000) -> list[object]:
    """Random events (arrivals, admissions, placements, finishes, abandonments) and every
    answer the controller gave; the event stream depends only on `seed` and the answers."""
    rng = np.random.default_rng(seed)
    k = len(c.spec.classes)
    out: list[object] = []
    queued: list[int] = []
    prefilling: list[int] = []
    decoding: list[tuple[int, Pool]] = []
    for _ in range(events):
        e = int(rng.integers(0, 6))
        if e == 0:
            queued.append(c.on_arrival(int(rng.integers(0, k))))
        elif e == 1:
            a = c.next_prefill()
            out.append(a)
            if a is not None:
                queued.remove(a.ticket)
                prefilling.append(a.ticket)
        elif e == 2 and prefilling:
            t = prefilling.pop(int(rng.integers(0, len(prefilling))))
            p = c.place_decode(t, int(rng.integers(0, 2)), int(rng.integers(0, 2)),
                               int(rng.integers(0, 2)), gpu=int(rng.integers(0, 3)))
            out.append(p)
            if not p.waits:
                decoding.append((t, Pool(p.value)))
        elif e == 3 and decoding:
            t, pool = decoding.pop(int(rng.integers(0, len(decoding))))
            c.on_finish(t)
            a = c.next_decode(pool, gpu=int(rng.integers(0, 3)))
            out.append(a)
            if a is not None:
                decoding.append((a.ticket, pool))
        elif e == 4 and queued:
            out.append(c.on_abandon(queued.pop(int(rng.integers(0, len(queued))))))
    out.append(c.stats())
    return out


@pytest.mark.parametrize("policy", list(PolicyName))
def test_compiled_rules_drive_the_controller_identically(policy: PolicyName) -> None:
    spec = make_spec([Cls(1.0, 0.5, p_solo=0.4), Cls(0.0, p_solo=0.9), Cls(2.5, 1.0, 0.1)],
                     router=RouterRule.SLI_SPLIT)
    python = Controller.from_spec(spec, policy, rng=np.random.default_rng(3))
    compiled = Controller.from_spec(spec, policy, rng=np.random.default_rng(3), compiled=True)
    assert _drive(python, seed=11) == _drive(compiled, seed=11)


def test_saturated_deficit_gate_fills_slots_in_proportion_to_the_targets() -> None:
    # Every class always waits and 16 = 2·Σ n·x* slots are filled. Each admission raises the
    # chosen class's ξ by 1/T_i; a class admitted past 2·T_i would have been the minimum at
    # ξ ≥ 1, so every class would already hold 2·T_j and the slots would be full: the fill
    # ends at exactly X = 2·T. From there a freed slot has the unique minimum ξ and goes back
    # to the class that freed it.
    targets = (1.0, 2.0, 5.0)
    c = Controller.from_spec(make_spec([Cls(t) for t in targets]))
    for k in range(3):
        for _ in range(40):
            c.on_arrival(k)
    running = [c.next_prefill() for _ in range(16)]
    assert [s.prefilling for s in c.stats().classes] == [2, 4, 10]
    rng = np.random.default_rng(4)
    for _ in range(50):
        done = running.pop(int(rng.integers(0, len(running))))
        assert done is not None
        c.place_decode(done.ticket, 1, 1)
        c.on_finish(done.ticket)
        c.on_arrival(done.cls)
        refill = c.next_prefill()
        assert refill is not None and refill.cls == done.cls
        running.append(refill)
    assert [s.prefilling for s in c.stats().classes] == [2, 4, 10]


def test_only_the_sli_router_draws_random_numbers() -> None:
    rng = np.random.default_rng(12)
    before = rng.bit_generator.state
    c = Controller.from_spec(TWO, PolicyName.GATE_AND_ROUTE, rng=rng)
    for _ in range(20):
        t = c.on_arrival(0)
        c.next_prefill()
        c.place_decode(t, 1, 1)
    assert rng.bit_generator.state == before
