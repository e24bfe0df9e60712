"""The one metrics module: numeric values by hand, the measured path, iteration curves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fluidgate import metrics as mx
from fluidgate.controllers.plan import mixed_gpu_count
from fluidgate.metrics import Measured, Metric, measured_report
from fluidgate.model import CurveForm, IterationCurve, IterationTime, curve_time
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.sli_dsl.units import MONEY_RATE, NUMBER, RATE, TIME
from tests.conftest import REFERENCE, ROOT

TAU = 0.0174 + 6.2e-5 * 256
GAMMA = 1 / 0.022
REF = parse_policy(REFERENCE).policy


def test_catalogue_matches_the_language_reference() -> None:
    """SLI-LANGUAGE.md's table: names, dimensions and which take a class."""
    cat = mx.CATALOGUE
    assert [m.value for m in cat] == ["rate", "admitted", "served", "abandonment", "wait",
                                      "ttft", "tpot", "spread", "mixed_gpus", "revenue"]
    assert [cat[m].dim for m in (Metric.RATE, Metric.ADMITTED, Metric.SERVED)] == [RATE] * 3
    assert cat[Metric.ABANDONMENT].dim == NUMBER and cat[Metric.TTFT].dim == TIME
    assert cat[Metric.REVENUE].dim == MONEY_RATE
    assert cat[Metric.TPOT].arity is mx.Arity.OPTIONAL_CLASS and cat[Metric.TPOT].ratio
    assert cat[Metric.SPREAD].arity is mx.Arity.POOL
    assert cat[Metric.MIXED_GPUS].arity is mx.Arity.NONE


def test_measured_window_by_hand() -> None:
    """n = 500 GPUs, 100 s: 25 000 arrivals of decode_heavy, 1 250 left, 20 000 served."""
    m = Measured(arrivals=25_000, admitted=23_750, served_mixed=5_000, served_solo=15_000,
                 abandoned=1_250, prefilling=9.0, decoding_mixed=30.0, decoding_solo=50.0,
                 waiting_prefill=500.0, waiting_decode=0.0)
    idle = Measured(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    rep = measured_report(REF, [m, idle], duration=100.0)
    c0, c1 = rep.classes
    assert c0.rate == pytest.approx(250.0) and c0.admitted == pytest.approx(237.5)
    assert c0.served == pytest.approx(200.0)
    assert c0.abandonment == pytest.approx(0.05)
    assert c0.wait == pytest.approx(500.0 / 250.0)  # Little: 500 waiting, 250 arrive per s
    assert c0.ttft == pytest.approx(2.0 + 300 * TAU / 256)
    assert c0.tpot == pytest.approx(80.0 / (30.0 / TAU + 50.0 * GAMMA))
    assert c0.p_solo == pytest.approx(0.75)
    # a class nothing arrived from: no wait, never admitted, decodes nowhere, solo by rule
    assert (c1.abandonment, c1.wait, c1.ttft, c1.tpot, c1.p_solo) == (0.0, 0.0, None, None, 1.0)
    assert rep.tpot == pytest.approx(c0.tpot)
    assert rep.mixed_share == pytest.approx(9.0 / 500)
    assert rep.spread_prefill == pytest.approx(9.0 / 500)
    w = 0.1 * 300 + 0.2 * 1000
    assert rep.revenue == pytest.approx(w * 200.0)  # bundled: w per completion
    assert rep.value(Metric.ABANDONMENT, "decode_heavy") == pytest.approx(0.05)
    with pytest.raises(ValueError, match="positive time"):
        measured_report(REF, [m, idle], duration=0.0)


def test_plan_metrics_equal_the_measured_path_at_the_fluid_optimum() -> None:
    """Feeding the optimum's own flows through the measurement path gives the same numbers:
    the simulator's comparison starts from zero difference when it reproduces the plan."""
    sol = solve_policy(REF)
    assert sol.metrics is not None
    T, n = 3600.0, REF.cluster.gpus
    measured = []
    for wc, cs in zip(REF.classes, sol.classes, strict=True):
        r = mx.ClassParams.of(REF.cluster, wc)
        measured.append(Measured(
            arrivals=n * wc.rate * T, admitted=n * r.mu_p * cs.x * T,
            served_mixed=n * r.mu_m * cs.y_m * T, served_solo=n * r.mu_s * cs.y_s * T,
            abandoned=n * wc.theta * (cs.q_p + cs.q_d) * T, prefilling=cs.prefill_gpus,
            decoding_mixed=cs.decodes_mixed, decoding_solo=cs.decodes_solo,
            waiting_prefill=cs.prefill_queue, waiting_decode=cs.decode_queue))
    got = measured_report(REF, measured, T)
    for a, b in zip(got.classes, sol.metrics.classes, strict=True):
        for field in ("rate", "admitted", "served", "abandonment", "wait", "ttft", "tpot",
                      "p_solo"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9)
    assert got.revenue == pytest.approx(sol.objective * n, rel=1e-9)


def test_revenue_coefficients_by_hand() -> None:
    """Bundled: w·μ_m and w·μ_s per decode; separate: c_p·C/τ, c_d/τ, c_d·γ (DESIGN.md §2)."""
    wc = REF.classes[0]  # P = 300, D = 1000
    k = mx.revenue_coefficients(REF.cluster, wc, "bundled")
    assert (k.x, k.y_m, k.y_s) == pytest.approx((0.0, 230 / (1000 * TAU), 230 * GAMMA / 1000))
    k = mx.revenue_coefficients(REF.cluster, wc, "separate")
    assert (k.x, k.y_m, k.y_s) == pytest.approx((0.1 * 256 / TAU, 0.2 / TAU, 0.2 * GAMMA))


def test_p_solo_is_one_for_a_class_that_completes_nothing() -> None:
    assert mx.solo_share(0.0, 0.0) == 1.0
    assert mx.solo_share(3.0, 1.0) == 0.25


def test_static_plan_rounds_up_but_ignores_solver_noise() -> None:
    assert mixed_gpu_count(500, 0.213214) == 107
    assert mixed_gpu_count(500, 0.214 + 1e-12) == 107
    assert mixed_gpu_count(10, 1.5) == 10 and mixed_gpu_count(10, 0.0) == 0


def test_inline_iteration_implies_flat_and_affine_curves() -> None:
    it = REF.cluster.iteration
    assert it.calibrated_mixed is None and it.calibrated_solo is None
    assert it.mixed_curve.form is CurveForm.AFFINE_IN_C
    assert it.mixed_curve.time(256, 15) == pytest.approx(TAU)
    assert it.solo_curve.form is CurveForm.CONSTANT
    assert it.solo_curve.time(0, 1) == it.solo_curve.time(0, 16) == pytest.approx(0.022)


def _calibrated(tmp_path: Path, calib: str, max_batch: int, chunk: int) -> IterationTime:
    path = ROOT / "fluidgate" / "calibration" / "data" / calib
    text = REFERENCE.replace("max_batch = 16", f"max_batch = {max_batch}").replace(
        "chunk     = 256 tokens", f"chunk = {chunk} tokens")
    start = text.index("    iteration")
    end = text.index("}", text.index("{", start)) + 1
    text = text[:start] + f'    iteration from "{path}"' + text[end:]
    return parse_policy(text).policy.cluster.iteration


def test_calibrated_curves_are_kept_on_the_policy(tmp_path: Path) -> None:
    """cpu-tiny: τ_solo(b) = c + a·b and τ_mix(C, b) = m0 + m_chunk·C + m_decode·b, fitted at
    B = 32; by the file's own definitions 1/γ = τ_solo(B) and α + β·C = τ_mix(C, B−1)."""
    it = _calibrated(tmp_path, "cpu-tiny.calib.json", 32, 64)
    assert it.calibrated_solo is not None and it.calibrated_mixed is not None
    solo, mixed = it.solo_curve, it.mixed_curve
    assert solo.form is CurveForm.AFFINE and mixed.form is CurveForm.AFFINE
    assert solo.time(0, 32) == pytest.approx(it.tau_solo, rel=1e-12)
    assert solo.time(0, 1) < solo.time(0, 32)
    for chunk in (32.0, 64.0, 256.0):
        assert mixed.time(chunk, 31) == pytest.approx(it.tau_mix(chunk), rel=1e-12)
    # the plain-float evaluator a compiled simulator calls
    assert curve_time(*mixed.coefficients, 64.0, 31.0) == mixed.time(64.0, 31.0)


def test_quadratic_and_hinge_curves_evaluate_by_hand(tmp_path: Path) -> None:
    it = _calibrated(tmp_path, "sarathi-serve-fig2.calib.json", 32, 512)
    mixed = it.mixed_curve
    assert mixed.form is CurveForm.QUADRATIC_IN_C
    m0, m1, m2 = 0.027701582590964512, 0.0001568120355165187, 6.946632043599121e-09
    assert mixed.time(512, 7) == pytest.approx(m0 + m1 * 512 + m2 * 512**2, rel=1e-12)
    hinge = IterationCurve.from_fit("hinge", {"c": 0.02, "a": 0.001, "b0": 8.0})
    assert hinge.time(0, 4) == pytest.approx(0.02)
    assert hinge.time(0, 18) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="unknown curve form"):
        IterationCurve.from_fit("cubic", {"c": 1.0})
    with pytest.raises(ValueError, match="no coefficient"):
        IterationCurve.from_fit("affine", {"c": 1.0, "zz": 2.0})
    assert math.isfinite(hinge.coefficients[4])
