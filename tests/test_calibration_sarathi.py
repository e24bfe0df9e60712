"""Fitting the published Sarathi-Serve batch timings (shared/data/sarathi_serve)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fluidgate.calibration.fit import FitOptions, calibrate
from fluidgate.calibration.importers import load, load_many

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SARATHI = DATA / "sarathi_serve"

pytestmark = pytest.mark.skipif(
    not (SARATHI / "osdi_figure-2_decode.csv").is_file(),
    reason=f"shared data not found at {SARATHI} (CI clones shared/ beside the repository)",
)


def _figure2() -> list[Path]:
    return [SARATHI / "osdi_figure-2_decode.csv", SARATHI / "osdi_figure-2_prefill.csv"]


def test_figure2_files_are_read_in_seconds_with_the_right_shapes() -> None:
    decode = load(SARATHI / "osdi_figure-2_decode.csv")
    prefill = load(SARATHI / "osdi_figure-2_prefill.csv")
    assert [r.batch_size for r in decode.rows] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert {r.kind for r in decode.rows} == {"solo"}
    assert decode.rows[0].time_s == pytest.approx(0.04680326674133536)
    assert [r.chunk for r in prefill.rows] == [128 * 2**i for i in range(8)]
    assert {r.kind for r in prefill.rows} == {"prefill"}
    assert prefill.rows[-1].time_s == pytest.approx(4.407501052133739)


def test_table2_is_read_in_milliseconds() -> None:
    table = load(SARATHI / "osdi_table-2_results.csv")
    kinds = [(r.kind, r.batch_size, r.chunk) for r in table.rows]
    assert kinds == [("solo", 4, 0), ("mixed", 3, 1021), ("prefill", 0, 1024)]
    assert table.rows[1].time_s == pytest.approx(0.2176498775370419)


def test_both_curves_fit_well() -> None:
    """R² ≥ 0.95 and median relative error ≤ 10% on every curve, as the LP needs."""
    cal = calibrate(load_many(_figure2()))
    for curve in (cal.solo, cal.mix):
        assert curve.r2 >= 0.95, (curve.form.name, curve.r2)
        assert float(np.median(np.abs(curve.rel_residuals))) <= 0.10
    assert any("no mixed batches" in w for w in cal.warnings)


def test_fit_statistics_match_an_independent_weighted_least_squares() -> None:
    """Recompute the decode fit with scipy's curve_fit (sigma = y) and compare everything."""
    from scipy import stats
    from scipy.optimize import curve_fit

    data = load(SARATHI / "osdi_figure-2_decode.csv")
    b = np.array([r.batch_size for r in data.rows], float)
    y = np.array([r.time_s for r in data.rows])
    popt, pcov = curve_fit(lambda x, c, a: c + a * x, b, y, sigma=y, absolute_sigma=False)
    half = stats.t.ppf(0.975, b.size - 2) * np.sqrt(np.diag(pcov))
    cal = calibrate(load_many(_figure2()), FitOptions(solo_form="affine"))
    ci = cal.solo.ci95()
    assert cal.solo.values == pytest.approx(popt, rel=1e-6)
    assert ci["c"] == pytest.approx((popt[0] - half[0], popt[0] + half[0]), rel=1e-6)
    assert ci["a"] == pytest.approx((popt[1] - half[1], popt[1] + half[1]), rel=1e-6)
    r2 = 1 - np.sum((y - (popt[0] + popt[1] * b)) ** 2) / np.sum((y - y.mean()) ** 2)
    assert cal.solo.r2 == pytest.approx(r2, rel=1e-9)


def test_prefill_bends_upward_and_the_outlier_is_reported() -> None:
    cal = calibrate(load_many(_figure2()), FitOptions(max_batch=32, chunk_range=(256, 2048)))
    assert cal.mix.form.name == "quadratic-in-C"
    assert cal.mix.coefficients()["m_chunk2"] > 0
    assert [p[1] for p in cal.mix.dropped] == [256.0]  # 121 ms, slower than 512 tokens' 106 ms
    assert cal.gamma == pytest.approx(1 / float(cal.solo.predict(32.0)))
    # Over the chunks an operator would serve the LP's line stays within a few percent.
    assert cal.secant_max_rel_gap < 0.05


def test_figure9_is_refused_with_a_reason() -> None:
    from fluidgate.calibration.csvformat import MeasurementError

    with pytest.raises(MeasurementError, match="not per-iteration"):
        load(SARATHI / "osdi_figure-9_chunking-overhead.csv")
