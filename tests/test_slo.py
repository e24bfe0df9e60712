"""SLO constraints: linear forms, optimum vs an independent LP, shadow prices, rejections."""

from __future__ import annotations

import pytest

from fluidgate.diagnostics import PolicyError
from fluidgate.formulations.columns import Column, Var
from fluidgate.formulations.slo_compile import compile_all
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from tests import independent
from tests.conftest import REFERENCE, solver_params, with_slo

TAU = 0.0174 + 6.2e-5 * 256
GAMMA = 1 / 0.022


def solve(*lines: str, solver: str = "highs"):  # type: ignore[no-untyped-def]
    return solve_policy(parse_policy(with_slo(REFERENCE, *lines)).policy, solver)


CASES = [
    ("tpot <= 25 ms", {"tpot_max": 0.025}),
    ("tpot <= 23 ms", {"tpot_max": 0.023}),
    ("spread(prefill) <= 0.01", {"spread_prefill_max": 0.01}),
    ("abandonment(all) <= 1 %", {"abandonment_max": 0.01}),
    ("abandonment(all) <= 10 %", {"abandonment_max": 0.10}),
]


@pytest.mark.parametrize("solver", solver_params())
@pytest.mark.parametrize(("line", "setting"), CASES, ids=[c[0] for c in CASES])
def test_reference_with_slo_matches_independent_formulation(
    solver: str, line: str, setting: dict[str, float]
) -> None:
    inst = independent.reference_instance()
    for key, value in setting.items():
        setattr(inst, key, value)
    ref = independent.solve(inst)
    sol = solve(line, solver=solver)
    assert sol.status.value == ref.status
    if ref.objective is not None:
        assert sol.objective == pytest.approx(ref.objective, rel=1e-6)


def test_abandonment_one_percent_is_infeasible_on_the_reference() -> None:
    """By hand: decode capacity is worth 0.668 class-0 completions per GPU·s, 0.693 needed."""
    sol = solve("abandonment(all) <= 1 %")
    assert not sol.optimal
    assert sol.conflict is not None
    assert [label for label, _ in sol.conflict.items] == [
        "abandonment(decode_heavy) <= 1 %", "abandonment(prefill_heavy) <= 1 %"]


def test_tpot_row_coefficients_by_hand() -> None:
    """tpot(c) ≤ T ⇔ (1 − T/τ)·y_m + (1 − Tγ)·y_s ≤ 0; loosening T moves it by −(y_m/τ + γy_s)."""
    pol = parse_policy(with_slo(REFERENCE, "tpot(decode_heavy) <= 25 ms")).policy
    (row,) = compile_all(pol).rows
    assert row.coeffs == pytest.approx({Column(Var.Y_M, 0): 1 - 0.025 / TAU,
                                        Column(Var.Y_S, 0): 1 - 0.025 * GAMMA})
    assert row.rhs == pytest.approx(0.0, abs=1e-15)
    assert row.slack_constant == pytest.approx(0.0, abs=1e-15)
    assert row.slack_gradient == pytest.approx(
        {Column(Var.Y_M, 0): -1 / TAU, Column(Var.Y_S, 0): -GAMMA})


def test_ttft_and_served_rows_by_hand() -> None:
    pol = parse_policy(with_slo(
        REFERENCE, "ttft(decode_heavy) <= 2 s", "served(prefill_heavy) >= 0.4 /s per gpu",
    )).policy
    ttft, served = compile_all(pol).rows
    # q_p/λ + Pτ/C ≤ 2  →  2·q_p ≤ 2 − 300τ/256
    assert ttft.coeffs == pytest.approx({Column(Var.Q_P, 0): 2.0})
    assert ttft.rhs == pytest.approx(2 - 300 * TAU / 256)
    # n(μ_m y_m + μ_s y_s) ≥ 0.4·n  →  −500·μ_m·y_m − 500·μ_s·y_s ≤ −200
    assert served.coeffs == pytest.approx(
        {Column(Var.Y_M, 1): -500 / (400 * TAU), Column(Var.Y_S, 1): -500 * GAMMA / 400})
    assert served.rhs == pytest.approx(-200.0)


def test_all_expands_to_one_row_per_class() -> None:
    pol = parse_policy(with_slo(REFERENCE, "wait(all) <= 1 s")).policy
    labels = [r.slo.label for r in compile_all(pol).rows]
    assert labels == ["wait(decode_heavy) <= 1 s", "wait(prefill_heavy) <= 1 s"]


@pytest.mark.parametrize("solver", solver_params())
@pytest.mark.parametrize(
    ("template", "bound", "step", "unit"),
    [
        ("tpot <= {} ms", 23.0, 0.01, 1e-3),
        ("spread(prefill) <= {}", 0.01, 1e-5, 1.0),
        ("ttft(decode_heavy) <= {} s", 0.3, 1e-5, 1.0),
        ("served(decode_heavy) >= {} /s", 240.0, -1e-3, 1.0),
    ],
)
def test_shadow_price_equals_finite_difference(
    solver: str, template: str, bound: float, step: float, unit: float
) -> None:
    """Shadow price = ∂R*/∂(looser bound), checked by re-solving with a looser bound."""
    base = solve(template.format(repr(bound)), solver=solver)
    looser = solve(template.format(repr(bound + step)), solver=solver)
    assert base.optimal and looser.optimal
    (slo,) = base.slos
    assert slo.binding
    fd = (looser.objective - base.objective) / (abs(step) * unit)  # type: ignore[operator]
    assert slo.shadow_price is not None and slo.shadow_price > 0
    assert slo.shadow_price == pytest.approx(fd, rel=2e-3)


@pytest.mark.parametrize("solver", solver_params())
def test_dual_sign_is_the_same_for_every_way_of_writing_a_bound(solver: str) -> None:
    forms = ["ttft(decode_heavy) <= 0.3 s", "0.3 s >= ttft(decode_heavy)",
             "-ttft(decode_heavy) >= -0.3 s", "2 * ttft(decode_heavy) <= 0.6 s"]
    prices = []
    for form in forms:
        (slo,) = solve(form, solver=solver).slos
        assert slo.shadow_price is not None
        prices.append(slo.shadow_price)
    # the last form doubles the constraint's units: a unit of its slack is half a second
    assert prices[0] > 0
    assert prices[1] == pytest.approx(prices[0], rel=1e-6)
    assert prices[2] == pytest.approx(prices[0], rel=1e-6)
    assert prices[3] == pytest.approx(prices[0] / 2, rel=1e-6)


def test_slack_and_binding_report_achieved_values() -> None:
    sol = solve("tpot <= 23 ms", "ttft(decode_heavy) <= 5 s")
    tpot, ttft = sol.slos
    assert tpot.binding and tpot.value == pytest.approx(0.023, rel=1e-9)
    assert not ttft.binding and ttft.shadow_price == pytest.approx(0.0, abs=1e-9)
    assert ttft.slack == pytest.approx(5 - ttft.value)  # type: ignore[operator]


def test_soft_constraint_penalty_and_violation() -> None:
    hard = solve("spread(prefill) <= 0.01")
    free = solve()
    cheap = solve("soft spread(prefill) <= 0.01 penalty 1")
    dear = solve("soft spread(prefill) <= 0.01 penalty 1e6")
    # a cheap penalty is paid rather than obeyed; a dear one is obeyed
    (c,) = cheap.slos
    assert c.violation is not None and c.violation > 0.1
    assert cheap.objective == pytest.approx(cheap.revenue_rate - 1 * c.violation, rel=1e-9)
    assert cheap.revenue_rate == pytest.approx(free.objective, rel=1e-9)
    assert dear.objective == pytest.approx(hard.objective, rel=1e-9)
    assert dear.slos[0].violation == pytest.approx(0.0, abs=1e-9)


def test_revenue_metric_is_cluster_wide() -> None:
    free = solve()
    assert free.objective is not None
    bound = free.objective * 500 * 0.99
    sol = solve(f"revenue >= {bound!r} per s")
    (r,) = sol.slos
    assert r.value == pytest.approx(free.objective * 500, rel=1e-9)
    assert not r.binding


def test_mixed_gpus_bound_changes_the_plan() -> None:
    sol = solve("mixed_gpus <= 15 %")
    assert sol.plan is not None and sol.plan.mixed_share == pytest.approx(0.15, rel=1e-9)
    assert sol.plan.mixed_gpus == 75


def reject(line: str) -> str:
    with pytest.raises(PolicyError) as err:
        pol = parse_policy(with_slo(REFERENCE, line)).policy
        compiled = compile_all(pol)
        if compiled.errors:
            raise PolicyError(compiled.errors, pol.source_text)
    return err.value.render()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("ttft(decode_heavy) * ttft(prefill_heavy) <= 1 s * 1 s", "not linear"),
        ("ttft(decode_heavy) / (mixed_gpus - 0.5) <= 3 s", "whose sign is not fixed"),
        ("tpot(decode_heavy) + tpot(prefill_heavy) <= 50 ms", "not linear"),
        ("soft tpot <= 30 ms penalty 5", "ratio metric (tpot) may not appear in a soft"),
        ("spread(prefill) >= 0.1", "only be bounded from above"),
        ("spread(decode) == 0", "only be bounded from above"),
        ("ttft(decode_heavy) / 0 <= 1 s", "division by zero"),
        ("ttft(decode_heavy) <= 5 %", "cannot compare a time and a plain number"),
        ("served(decode_heavy) <= 2 s", "cannot compare a rate"),
        ("ttft <= 2 s", "'ttft' needs a class"),
        ("mixed_gpus(decode_heavy) <= 1", "takes no argument"),
        ("spread(gpus) <= 1", "'spread' takes 'prefill' or 'decode'"),
        ("ttfd(decode_heavy) <= 2 s", "unknown metric 'ttfd' (did you mean 'ttft'?)"),
        ("soft ttft(decode_heavy) <= 2 s", "needs 'penalty"),
        ("ttft(decode_heavy) <= 2 s penalty 3", "only applies to a soft"),
    ],
)
def test_rejected_constraints_say_why_with_position(line: str, reason: str) -> None:
    text = reject(line)
    assert reason in text
    assert "<policy>:" in text and "^" in text


def test_all_errors_reported_in_one_pass() -> None:
    text = reject("ttft(nope) <= 2 s\n    tpot <= 3 %\n    ttft(decode_heavy) * "
                  "ttft(decode_heavy) <= 1 s * 1 s")
    assert "unknown class 'nope'" in text and "cannot compare" in text


def test_all_with_spaces_names_the_class() -> None:
    pol = parse_policy(with_slo(REFERENCE, "wait( all ) <= 1 s")).policy
    assert [s.label for s in pol.slos] == ["wait(decode_heavy) <= 1 s",
                                           "wait(prefill_heavy) <= 1 s"]


def test_overflowing_bound_is_rejected() -> None:
    assert "1e+300 is outside the range fluidgate can solve reliably" in reject(
        "ttft(decode_heavy) <= 1e300 s * 1e300 - 1e300 s * 1e300")
    # each number in range, their product not
    assert "too large to represent" in reject(
        "ttft(decode_heavy) <= 1e15 s" + " * 1e15" * 21 + " - 1e15 s" + " * 1e15" * 21)
