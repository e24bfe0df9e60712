"""The fluid LP against values derived independently of fluidgate's code.

DESIGN.md §2 publishes the reference optimum; a one-class case is solved by hand below; and
random instances are checked against `independent.py`, a separate array formulation.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from tests import independent
from tests.conftest import REFERENCE, solver_params

REL = 1e-6


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(1e-12, abs(b))


@pytest.mark.parametrize("solver", solver_params())
def test_reference_bundled_matches_design(solver: str) -> None:
    sol = solve_policy(parse_policy(REFERENCE).policy, solver)
    assert sol.optimal
    assert sol.objective is not None
    assert rel(sol.objective, 297.7162) < 1e-6 or abs(sol.objective - 297.7162) < 5e-5
    x = [c.x for c in sol.classes]
    q_p = [c.q_p for c in sol.classes]
    q_d = [c.q_d for c in sol.classes]
    assert x == pytest.approx([0.018261, 0.194953], abs=5e-7)
    assert q_p == pytest.approx([0.31669, 0.0], abs=5e-6)
    assert q_d == pytest.approx([0.0, 0.0], abs=1e-9)


@pytest.mark.parametrize("solver", solver_params())
def test_reference_separate_matches_design(solver: str) -> None:
    text = REFERENCE.replace("pricing bundled", "pricing separate")
    sol = solve_policy(parse_policy(text).policy, solver)
    assert sol.optimal and sol.objective is not None
    assert abs(sol.objective - 298.5980) < 5e-5
    # The decode backlog is not unique under separate pricing: HiGHS stops at DESIGN.md's
    # vertex q_d = (0, 0.80025); Gurobi at another optimum, q_d = (0.3201, 0), same R*.
    if solver == "highs":
        assert [c.q_d for c in sol.classes] == pytest.approx([0.0, 0.80025], abs=5e-6)
    assert sum(c.q_d for c in sol.classes) > 0.3
    assert any("standing decode backlog" in w for w in sol.warnings)


def test_reference_to_full_precision_against_independent_formulation() -> None:
    """The published numbers are rounded; the independent LP gives every digit."""
    for pricing in ("bundled", "separate"):
        inst = independent.reference_instance()
        inst.pricing = pricing
        ref = independent.solve(inst)
        text = REFERENCE.replace("pricing bundled", f"pricing {pricing}")
        sol = solve_policy(parse_policy(text).policy)
        assert sol.objective is not None and ref.objective is not None
        assert rel(sol.objective, ref.objective) < REL


HAND_CASE = """
cluster {
    gpus = 10; max_batch = 4; chunk = 100 tokens
    iteration { mixed = 20 ms; solo = 10 ms }
}
pricing bundled { input = 0 per token; output = 0.01 per token }
class only { rate = 10 /s per gpu; prompt = 100 tokens; output = 100 tokens; patience = 1 s }
"""


def test_hand_computed_single_class_overload() -> None:
    """τ = 0.02, γ = 100, μ_p = 50, μ_m = 0.5, μ_s = 1, B = 4, w = 1.

    Completions ≤ min(50x, 0.5·3x + 1·4(1−x)) = min(50x, 4 − 2.5x), maximal where
    52.5x = 4: x = 4/52.5, R* = 200/52.5 = 80/21; q_p = (10 − 80/21)/1, q_d = 0.
    """
    sol = solve_policy(parse_policy(HAND_CASE).policy)
    assert sol.objective == pytest.approx(80 / 21, rel=1e-9)
    only = sol.classes[0]
    assert only.x == pytest.approx(4 / 52.5, rel=1e-9)
    assert only.q_p == pytest.approx(10 - 80 / 21, rel=1e-9)
    assert only.q_d == pytest.approx(0.0, abs=1e-9)
    assert only.abandonment == pytest.approx((10 - 80 / 21) / 10, rel=1e-9)
    assert sol.plan is not None and sol.plan.mixed_gpus == math.ceil(10 * 4 / 52.5)


def test_hand_computed_underloaded_class_is_fully_served() -> None:
    """Ample capacity: everything is served, R* = w·λ = (1·100 + 1·100)·0.1 = 20."""
    text = """
    cluster { gpus = 1; max_batch = 8; chunk = 100 tokens
              iteration { mixed = 10 ms; solo = 10 ms } }
    pricing bundled { input = 1 per token; output = 1 per token }
    class a { rate = 0.1 /s per gpu; prompt = 100 tokens; output = 100 tokens; patience = none }
    """
    sol = solve_policy(parse_policy(text).policy)
    assert sol.objective == pytest.approx(20.0, rel=1e-12)
    # μ_p = C/(P·τ) = 100/(100·0.01) = 100, so x = λ/μ_p = 0.001 exactly
    assert sol.classes[0].x == pytest.approx(0.001, rel=1e-12)
    assert sol.classes[0].abandonment == 0.0


def test_cluster_wide_rate_is_divided_by_gpus() -> None:
    per_gpu = solve_policy(parse_policy(REFERENCE).policy)
    cluster = REFERENCE.replace("rate     = 0.5 /s per gpu", "rate = 250 /s")
    total = solve_policy(parse_policy(cluster).policy)
    assert total.objective == pytest.approx(per_gpu.objective, rel=1e-12)


def test_class_price_override_and_per_request_prices() -> None:
    """A per-request price equals the per-token price times the class's tokens."""
    a = REFERENCE.replace("    patience = 10 s\n}\n\nclass prefill_heavy",
                          "    patience = 10 s\n    price { input = 30 per request }\n}\n\n"
                          "class prefill_heavy", 1)
    sol_a = solve_policy(parse_policy(a).policy)
    sol_ref = solve_policy(parse_policy(REFERENCE).policy)
    assert sol_a.objective == pytest.approx(sol_ref.objective, rel=1e-12)  # 30/300 = 0.1
    b = a.replace("input = 30 per request", "input = 0.2 per token")
    assert solve_policy(parse_policy(b).policy).objective > sol_ref.objective  # type: ignore


classes_st = st.lists(
    st.tuples(
        st.floats(0.05, 2.0),  # rate
        st.integers(20, 4000),  # prompt
        st.integers(20, 2000),  # output
        st.floats(1.0, 120.0),  # patience
        st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),  # input price (0 or in range)
        st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),  # output price
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=40, deadline=None)
@given(
    classes=classes_st,
    B=st.integers(2, 64),
    C=st.sampled_from([64, 128, 256, 512, 1024]),
    alpha_ms=st.floats(5.0, 40.0),
    beta_us=st.floats(10.0, 120.0),
    solo_ms=st.floats(5.0, 40.0),
    pricing=st.sampled_from(["bundled", "separate"]),
)
def test_random_instances_match_independent_formulation(
    classes: list[tuple[float, int, int, float, float, float]],
    B: int, C: int, alpha_ms: float, beta_us: float, solo_ms: float, pricing: str,
) -> None:
    text = (
        f"cluster {{ gpus = 100; max_batch = {B}; chunk = {C} tokens\n"
        f"iteration {{ mixed = {alpha_ms!r} ms + {beta_us!r} us/token * chunk; "
        f"solo = {solo_ms!r} ms }} }}\n"
        f"pricing {pricing} {{ input = 0 per token; output = 0 per token }}\n"
    )
    klasses = []
    for i, (rate, P, D, pat, cin, cout) in enumerate(classes):
        text += (f"class c{i} {{ rate = {rate!r} /s per gpu; prompt = {P} tokens; "
                 f"output = {D} tokens; patience = {pat!r} s\n"
                 f"price {{ input = {cin!r} per token; output = {cout!r} per token }} }}\n")
        klasses.append(independent.Klass(rate, P, D, 1 / pat, cin, cout))
    inst = independent.Instance(B=B, C=C, tau=alpha_ms * 1e-3 + beta_us * 1e-6 * C,
                                tau_solo=solo_ms * 1e-3, classes=klasses, pricing=pricing)
    ref = independent.solve(inst)
    sol = solve_policy(parse_policy(text).policy)
    assert sol.objective is not None and ref.objective is not None
    assert abs(sol.objective - ref.objective) <= 1e-6 * max(1.0, abs(ref.objective))
