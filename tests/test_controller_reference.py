"""The runtime controller on the spec of DESIGN.md's reference instance, both pricings.

Expected decisions come from the published optimum (x*, q_p*), not from the code: the spec
builder is tested elsewhere; here the controller must do with its numbers what DESIGN §4
says.
"""

from __future__ import annotations

import math

import pytest

from fluidgate.controllers.baselines import GateKind, PolicyName, RouterKind
from fluidgate.controllers.build import build_spec
from fluidgate.controllers.runtime import Controller
from fluidgate.controllers.spec import ControllerSpec
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from tests.conftest import REFERENCE

N = 500
X_STAR = (0.018261, 0.194953)  # DESIGN.md §2, bundled
QP_STAR = (0.31669, 0.0)


def reference_spec(pricing: str = "bundled") -> ControllerSpec:
    text = REFERENCE.replace("pricing bundled", f"pricing {pricing}")
    assert f"pricing {pricing}" in text
    return build_spec(solve_policy(parse_policy(text).policy), "examples/two_class.sli")


@pytest.fixture(scope="module")
def bundled() -> ControllerSpec:
    return reference_spec()


def test_plans_on_the_reference_cluster(bundled: ControllerSpec) -> None:
    m = math.ceil(N * sum(X_STAR))  # 107
    plans = {p: Controller.from_spec(bundled, p).plan for p in PolicyName}
    g = plans[PolicyName.GATE_AND_ROUTE]
    assert (g.gate, g.router, g.mixed_gpus, g.solo_gpus) == (
        GateKind.DEFICIT, RouterKind.SOLO_FIRST, m, N - m)
    assert (plans[PolicyName.FG_SP].mixed_gpus, plans[PolicyName.FG_SP].solo_gpus) == (m, N - m)
    for p in (PolicyName.FI_WSP, PolicyName.GI_WSP, PolicyName.GF_WSP):
        assert (plans[p].mixed_gpus, plans[p].solo_gpus) == (N, 0)


def test_bundled_gate_first_breaks_the_tie_by_queue_excess(bundled: ControllerSpec) -> None:
    # Nothing runs: ξ = −1 for both. Queues of 300 and 200: the excess Q − n·q_p* is
    # 300 − 158.3 = 141.7 for decode_heavy and 200 − 0 for prefill_heavy, so prefill_heavy
    # goes first, though its queue is shorter (per-GPU q_p* would have picked decode_heavy).
    c = Controller.from_spec(bundled)
    for _ in range(300):
        c.on_arrival(0)
    for _ in range(200):
        c.on_arrival(1)
    first = c.next_prefill()
    assert first is not None and first.cls == 1


def test_bundled_gate_fills_the_planned_slots_in_proportion(bundled: ControllerSpec) -> None:
    # With both classes always waiting, filling M slots by smallest ξ leaves, for two
    # classes, |X_i − M·T_i/ΣT| ≤ 1 (a class more than one above its share was the minimum
    # at a ξ above every other class's final ξ). T_i = n·x_i*: (9.13, 97.48); shares of 107:
    # (9.16, 97.84).
    c = Controller.from_spec(bundled)
    for _ in range(200):
        c.on_arrival(0)
        c.on_arrival(1)
    m = math.ceil(N * sum(X_STAR))
    for _ in range(m):
        c.next_prefill()
    running = [s.prefilling for s in c.stats().classes]
    targets = [N * x for x in X_STAR]
    assert sum(running) == m
    for x, t in zip(running, targets, strict=True):
        assert abs(x - m * t / sum(targets)) <= 1


def test_separate_gate_admits_the_largest_output_to_prompt_ratio_first() -> None:
    spec = reference_spec("separate")
    c = Controller.from_spec(spec)
    assert c.plan.gate is GateKind.PRIORITY
    t_prefill_heavy = c.on_arrival(1)  # D/P = 400/3000, arrives first
    t_decode_heavy = c.on_arrival(0)  # D/P = 1000/300
    assert c.next_prefill() == (t_decode_heavy, 0)
    assert c.next_prefill() == (t_prefill_heavy, 1)
