"""The fit: exact cases worked by hand, interval coverage on synthetic data, form selection."""

from __future__ import annotations

import numpy as np
import pytest

from fluidgate.calibration.csvformat import Measurement, MeasurementSet, classify
from fluidgate.calibration.curves import FORMS, fit_hinge, fit_linear
from fluidgate.calibration.fit import FitError, FitOptions, calibrate


def _rows(solo: list[tuple[int, float]], chunked: list[tuple[int, int, float]]) -> MeasurementSet:
    rows = [Measurement("solo", b, 0, t) for b, t in solo]
    rows += [Measurement(classify(b, c), b, c, t) for b, c, t in chunked]
    return MeasurementSet(tuple(rows))


def test_points_on_a_line_give_alpha_beta_exactly() -> None:
    # τ_mix = 0.02 + 1e-4·C with no dependence on b; τ_solo = 0.015 + 2e-4·b.
    chunked = [(b, c, 0.02 + 1e-4 * c) for c in (128, 256, 512, 1024) for b in (0, 8, 15)]
    solo = [(b, 0.015 + 2e-4 * b) for b in (1, 2, 4, 8, 16)]
    cal = calibrate(_rows(solo, chunked), FitOptions(max_batch=16))
    assert cal.alpha == pytest.approx(0.02, rel=1e-9)
    assert cal.beta == pytest.approx(1e-4, rel=1e-9)
    assert cal.gamma == pytest.approx(1 / (0.015 + 2e-4 * 16), rel=1e-9)
    assert cal.secant_max_rel_gap == pytest.approx(0.0, abs=1e-9)
    assert cal.mix.form.name == "affine"  # the exact line needs no C² term
    assert cal.solo.form.name == "affine"
    assert cal.mix.r2 == pytest.approx(1.0)
    assert not any("poorly" in w for w in cal.warnings)


def test_decode_slope_enters_alpha_at_b_minus_one() -> None:
    # τ_mix = 0.02 + 1e-4·C + 5e-4·b, so at B − 1 = 15: α = 0.02 + 15·5e-4 = 0.0275.
    chunked = [(b, c, 0.02 + 1e-4 * c + 5e-4 * b) for c in (64, 256, 1024) for b in (0, 4, 8)]
    solo = [(b, 0.015 + 2e-4 * b) for b in (1, 4, 16, 32)]
    cal = calibrate(_rows(solo, chunked), FitOptions(max_batch=16, chunk_range=(64, 1024)))
    assert cal.alpha == pytest.approx(0.0275, rel=1e-9)
    assert cal.beta == pytest.approx(1e-4, rel=1e-9)
    assert cal.mix.coefficients()["m_decode"] == pytest.approx(5e-4, rel=1e-9)
    assert any("extrapolates beyond the decodes measured" in w for w in cal.warnings)


def test_prefill_only_data_borrows_the_decode_curve_and_says_so() -> None:
    # No mixed batches: τ_mix(C, B−1) = prefill(C) + τ_solo(B−1) − τ_solo(0).
    chunked = [(0, c, 0.02 + 1e-4 * c) for c in (128, 256, 512, 1024)]
    solo = [(b, 0.015 + 2e-4 * b) for b in (1, 2, 4, 8, 16)]
    cal = calibrate(_rows(solo, chunked), FitOptions(max_batch=16))
    assert cal.alpha == pytest.approx(0.02 + 2e-4 * 15, rel=1e-9)
    assert cal.beta == pytest.approx(1e-4, rel=1e-9)
    assert cal.mix_decodes == 0
    assert any("no mixed batches" in w for w in cal.warnings)


def test_secant_of_a_quadratic_matches_hand_computation() -> None:
    # τ_mix = 0.05 + 1e-4·C + 1e-7·C² (b-free); secant over [100, 1100]:
    # β = 1e-4 + 1e-7·(100 + 1100) = 2.2e-4, α = τ(100) − β·100 = 0.061 − 0.022 = 0.039.
    def tau(c: float) -> float:
        return 0.05 + 1e-4 * c + 1e-7 * c * c

    chunked = [(b, c, tau(c)) for c in (100, 300, 600, 900, 1100) for b in (0, 7)]
    solo = [(b, 0.01 + 1e-3 * b) for b in (1, 2, 4, 8)]
    cal = calibrate(_rows(solo, chunked), FitOptions(max_batch=8, chunk_range=(100, 1100)))
    assert cal.mix.form.name == "quadratic"
    assert cal.beta == pytest.approx(2.2e-4, rel=1e-7)
    assert cal.alpha == pytest.approx(0.039, rel=1e-7)
    # Secant minus parabola is 1e-7·(C − 100)(1100 − C); relative to τ(C) on a fine grid.
    grid = np.linspace(100, 1100, 100_001)
    gap = 1e-7 * (grid - 100) * (1100 - grid) / tau(grid)  # type: ignore[arg-type]
    assert cal.secant_max_rel_gap == pytest.approx(float(gap.max()), rel=1e-3)


def _coverage(fit: object, truth: np.ndarray, seeds: int, make: object) -> np.ndarray:
    hits = np.zeros(truth.size)
    for seed in range(seeds):
        result = fit(*make(np.random.default_rng(seed)))  # type: ignore[operator]
        ci = result.ci95()
        hits += [
            name in ci and ci[name][0] <= t <= ci[name][1]
            for name, t in zip(result.form.names, truth, strict=True)
        ]
    return hits / seeds


def test_mixed_curve_intervals_cover_the_truth_at_the_advertised_rate() -> None:
    chunk, b = (a.ravel() for a in np.meshgrid([64.0, 128, 256, 512, 1024], [0.0, 4, 8, 16]))
    truth = np.array([0.02, 1e-4, 5e-4])

    def make(rng: np.random.Generator) -> tuple[object, ...]:
        y = (truth[0] + truth[1] * chunk + truth[2] * b) * (1 + 0.03 * rng.standard_normal(b.size))
        return FORMS["mix:affine"], b, chunk, y

    coverage = _coverage(fit_linear, truth, 200, make)
    assert np.all((coverage >= 0.90) & (coverage <= 0.99)), coverage


def test_solo_curve_intervals_cover_the_truth_at_the_advertised_rate() -> None:
    b = np.array([1.0, 2, 4, 8, 16, 32, 64])
    truth = np.array([0.015, 2e-4])

    def make(rng: np.random.Generator) -> tuple[object, ...]:
        y = (truth[0] + truth[1] * b) * (1 + 0.03 * rng.standard_normal(b.size))
        return FORMS["solo:affine"], b, np.zeros_like(b), y

    coverage = _coverage(fit_linear, truth, 200, make)
    assert np.all((coverage >= 0.90) & (coverage <= 0.99)), coverage


@pytest.mark.slow
def test_hinge_intervals_cover_the_truth_at_the_advertised_rate() -> None:
    b = np.repeat(np.array([1.0, 2, 4, 8, 12, 16, 24, 32, 48, 64]), 2)
    truth = np.array([0.015, 4e-4, 12.0])

    def make(rng: np.random.Generator) -> tuple[object, ...]:
        y = (truth[0] + truth[1] * np.maximum(0, b - truth[2])) * (
            1 + 0.02 * rng.standard_normal(b.size)
        )
        return b, y

    coverage = _coverage(fit_hinge, truth, 200, make)
    assert np.all((coverage >= 0.90) & (coverage <= 0.99)), coverage


def test_derived_constants_intervals_cover_the_truth() -> None:
    """α, β, γ intervals (delta method through both fits) with the true forms fixed."""
    chunk, b = (a.ravel() for a in np.meshgrid([64.0, 128, 256, 512, 1024], [0.0, 4, 8, 16]))
    solo_b = np.array([1.0, 2, 4, 8, 16, 32, 64])
    truth = {"alpha": 0.02 + 5e-4 * 15, "beta": 1e-4, "gamma": 1 / (0.015 + 2e-4 * 16)}
    hits = dict.fromkeys(truth, 0)
    seeds = 200
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ym = (0.02 + 1e-4 * chunk + 5e-4 * b) * (1 + 0.03 * rng.standard_normal(b.size))
        ys = (0.015 + 2e-4 * solo_b) * (1 + 0.03 * rng.standard_normal(solo_b.size))
        data = _rows(
            [(int(x), float(t)) for x, t in zip(solo_b, ys, strict=True)],
            [(int(x), int(c), float(t)) for x, c, t in zip(b, chunk, ym, strict=True)],
        )
        cal = calibrate(data, FitOptions(16, (64, 1024), "affine", "affine", False))
        for name, value in truth.items():
            lo, hi = cal.derived_ci95[name]
            hits[name] += lo <= value <= hi
    for name, count in hits.items():
        assert 0.90 <= count / seeds <= 0.99, (name, count / seeds)


def test_hinge_is_chosen_when_the_data_have_a_flat_start() -> None:
    b = np.array([1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64])
    rng = np.random.default_rng(3)
    y = (0.02 + 5e-4 * np.maximum(0, b - 10)) * (1 + 0.005 * rng.standard_normal(b.size))
    chunked = [(0, c, 0.02 + 1e-4 * c) for c in (128, 256, 512)]
    cal = calibrate(_rows([(int(x), float(t)) for x, t in zip(b, y, strict=True)], chunked))
    assert cal.solo.form.name == "hinge"
    assert "AICc" in cal.solo.selection
    c, a, b0 = cal.solo.values
    ci = cal.solo.ci95()
    assert ci["b0"][0] <= 10 <= ci["b0"][1]
    assert c == pytest.approx(0.02, rel=0.02)
    assert a == pytest.approx(5e-4, rel=0.05)
    assert b0 == pytest.approx(10, abs=1.5)


def test_affine_data_keep_the_affine_form() -> None:
    b = np.array([1, 2, 4, 8, 16, 32, 64])
    rng = np.random.default_rng(5)
    y = (0.015 + 2e-4 * b) * (1 + 0.01 * rng.standard_normal(b.size))
    chunked = [(0, c, 0.02 + 1e-4 * c) for c in (128, 256, 512)]
    cal = calibrate(_rows([(int(x), float(t)) for x, t in zip(b, y, strict=True)], chunked))
    assert cal.solo.form.name == "affine"


def test_a_wild_point_is_left_out_and_reported() -> None:
    chunks = [128, 256, 512, 1024, 2048, 4096, 8192, 16384]
    rng = np.random.default_rng(1)
    times = [
        (0.03 + 1.5e-4 * c + 7e-9 * c * c) * (1 + 0.02 * rng.standard_normal()) for c in chunks
    ]
    times[1] *= 1.8  # one timing hit by, say, a clock change
    solo = [(b, 0.015 + 2e-4 * b) for b in (1, 2, 4, 8)]
    cal = calibrate(_rows(solo, [(0, c, t) for c, t in zip(chunks, times, strict=True)]))
    assert [p[1] for p in cal.mix.dropped] == [256.0]
    assert any("left out an outlier (C=256" in w for w in cal.warnings)
    kept = calibrate(
        _rows(solo, [(0, c, t) for c, t in zip(chunks, times, strict=True)]),
        FitOptions(drop_outliers=False),
    )
    assert kept.mix.dropped == ()
    assert kept.mix.n == len(chunks)


def test_poor_fit_is_flagged() -> None:
    rng = np.random.default_rng(2)
    solo = [(b, 0.02 * (1 + 0.3 * rng.standard_normal() ** 2)) for b in (1, 2, 4, 8, 16, 32)]
    chunked = [(0, c, 0.02 + 1e-4 * c) for c in (128, 256, 512)]
    cal = calibrate(_rows(solo, chunked))
    assert any("τ_solo fits poorly" in w for w in cal.warnings)


def test_extrapolated_batch_and_chunk_range_are_flagged() -> None:
    solo = [(b, 0.015 + 2e-4 * b) for b in (1, 2, 4, 8)]
    chunked = [(b, c, 0.02 + 1e-4 * c + 1e-4 * b) for c in (128, 256, 512) for b in (0, 3)]
    cal = calibrate(_rows(solo, chunked), FitOptions(max_batch=64, chunk_range=(64, 4096)))
    assert any("γ extrapolates" in w for w in cal.warnings)
    assert any("reaches beyond the measured chunks" in w for w in cal.warnings)


@pytest.mark.parametrize(
    ("solo", "chunked", "message"),
    [
        ([], [(0, 128, 0.03), (0, 256, 0.04)], "no decode-only"),
        ([(1, 0.02), (2, 0.021), (4, 0.022)], [], "no batches with a prefill chunk"),
        ([(1, 0.02), (1, 0.021), (1, 0.022)], [(0, 128, 0.03), (0, 256, 0.04)], "too few"),
        ([(1, 0.02), (2, 0.021), (4, 0.022)], [(0, 128, 0.03), (0, 128, 0.031)], "2 different"),
        ([(1, 0.02), (2, 0.021), (4, 0.022)], [(0, 128, 0.03), (0, 256, 0.04)], "too few"),
    ],
)
def test_too_little_data_is_an_error_in_words(
    solo: list[tuple[int, float]], chunked: list[tuple[int, int, float]], message: str
) -> None:
    with pytest.raises(FitError, match=message):
        calibrate(_rows(solo, chunked))


def test_a_chunk_range_whose_secant_crosses_zero_is_refused() -> None:
    chunked = [(0, c, 1e-4 + 1e-9 * c * c) for c in (100, 1000, 5000, 10000)]
    solo = [(b, 0.015 + 2e-4 * b) for b in (1, 2, 4)]
    with pytest.raises(FitError, match=r"100\.\.10000 tokens \(the measured chunk range, the "
                       r"default\) crosses zero .* pass --chunk-range LO HI with the narrower"):
        calibrate(_rows(solo, chunked), FitOptions(max_batch=2, mix_form="quadratic"))


def test_a_given_chunk_range_that_fails_names_the_measured_one() -> None:
    """The CPU sweep measures chunks 32..256; a range copied from a GPU example (256..1024)
    must say so, not only that its secant crosses zero."""
    chunked = [(0, c, 1e-4 + 2e-9 * c * c) for c in (32, 64, 128, 256)]
    solo = [(b, 0.015 + 2e-4 * b) for b in (1, 2, 4)]
    options = FitOptions(max_batch=2, chunk_range=(256, 1024), mix_form="quadratic")
    with pytest.raises(FitError, match=r"256\.\.1024 tokens \(from --chunk-range; the data "
                       r"measured chunks 32\.\.256\) crosses zero .* or leave it out"):
        calibrate(_rows(solo, chunked), options)
    default = calibrate(_rows(solo, [(0, c, 0.02 + 1e-4 * c) for c in (32, 64, 128, 256)]),
                        FitOptions(max_batch=2))
    assert default.chunk_range == (32, 256)
    assert default.chunk_range_note == "chunks 32..256: the measured range (the default)"
