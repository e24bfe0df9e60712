"""Turn a fit into the calibration file and into the table a person reads in the terminal.

The file carries everything needed to audit the constants later (inputs with their hashes,
the hardware and library versions the measurements recorded, each curve's form, coefficients
and intervals, the warnings); the table shows the same facts at a glance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

import fluidgate
from fluidgate.calibration.csvformat import MeasurementSet
from fluidgate.calibration.curves import CurveResult
from fluidgate.calibration.fit import Calibration, FitOptions
from fluidgate.calibration.schema import SCHEMA_ID, CalibrationFile, CurveFit
from fluidgate.tablefit import Column, Sheet, fit
from fluidgate.textsafe import safe_text

UNITS = {
    "c": "s",
    "a": "s/stream",
    "b0": "streams",
    "m0": "s",
    "m_chunk": "s/token",
    "m_chunk2": "s/token²",
    "m_decode": "s/stream",
}


def curve_fit(curve: CurveResult) -> CurveFit:
    rel = np.abs(curve.rel_residuals)
    return CurveFit(
        form=curve.form.name,
        formula=curve.form.formula,
        coefficients=curve.coefficients(),
        ci95=curve.ci95(),
        r2=curve.r2,
        r2_relative=curve.r2_relative,
        median_rel_error=float(np.median(rel)),
        max_rel_error=float(rel.max()),
        n_points=curve.n,
        selection=curve.selection,
        excluded_points=[{"batch_size": b, "chunk": c, "time_s": t} for b, c, t in curve.dropped],
    )


def sha256(path: Path) -> str:
    from fluidgate.reads import InputKind, read_input

    return hashlib.sha256(read_input(path, InputKind.MEASUREMENTS)).hexdigest()


def calibration_file(
    cal: Calibration, data: MeasurementSet, inputs: Sequence[Path], options: FitOptions
) -> CalibrationFile:
    provenance: dict[str, Any] = {
        "inputs": [{"path": str(p), "sha256": sha256(p)} for p in inputs],
        "measurements": dict(data.metadata),
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fluidgate": fluidgate.__version__,
        "method": "relative-error weighted least squares (weights 1/y); forms chosen by AICc;"
        " 95% intervals from the WLS covariance with Student-t quantiles",
        "options": {
            "max_batch": options.max_batch,
            "chunk_range": options.chunk_range,
            "solo_form": options.solo_form,
            "mix_form": options.mix_form,
            "drop_outliers": options.drop_outliers,
        },
        "points": {
            kind: sum(r.kind == kind for r in data.rows) for kind in ("solo", "mixed", "prefill")
        },
    }
    return CalibrationFile.model_validate(
        {
            "schema": SCHEMA_ID,
            "alpha": cal.alpha,
            "beta": cal.beta,
            "gamma": cal.gamma,
            "r2": {"solo": cal.solo.r2, "mixed": cal.mix.r2},
            "curves": {"solo": curve_fit(cal.solo), "mixed": curve_fit(cal.mix)},
            "provenance": provenance,
            "warnings": list(cal.warnings),
            "max_batch": cal.max_batch,
            "chunk_range": cal.chunk_range,
            "secant_max_rel_gap": cal.secant_max_rel_gap,
            "derived_ci95": cal.derived_ci95,
            "tau_solo_at_max_batch": cal.tau_solo_at_b,
        }
    )


def _num(value: float) -> str:
    return f"{value:.4g}"


def _ci(ci: dict[str, tuple[float, float]], name: str) -> str:
    if name not in ci:
        return "n/a"
    lo, hi = ci[name]
    return f"[{_num(lo)}, {_num(hi)}]"


def _sheets(cal: Calibration) -> tuple[Sheet, Sheet, Sheet]:
    quality = Sheet("Fitted curves (median, worst: relative error of a point)",
                    [Column("curve", left=True)],
                    [Column("form", left=True), *(Column(h) for h in (
                        "points", "left out", "R²", "median", "worst"))])
    coefficients = Sheet("Coefficients (95% CI: weighted LS covariance, Student t)",
                         [Column("curve", left=True), Column("coefficient", left=True)],
                         [Column("value"), Column("95% CI"), Column("unit", left=True)])
    for label, curve in (("τ_solo", cal.solo), ("τ_mix", cal.mix)):
        rel = np.abs(curve.rel_residuals)
        quality.rows.append(([label], [
            curve.form.name, str(curve.n), str(len(curve.dropped)), f"{curve.r2:.4f}",
            f"{np.median(rel):.1%}", f"{rel.max():.1%}"]))
        ci = curve.ci95()
        for name, value in curve.coefficients().items():
            coefficients.rows.append(([label, name],
                                      [_num(value), _ci(ci, name), UNITS.get(name, "")]))
    derived = Sheet(f"LP constants at B = {cal.max_batch}, chunks"
                    f" {cal.chunk_range[0]:g}..{cal.chunk_range[1]:g} tokens",
                    [Column("constant", left=True)],
                    [Column("value"), Column("95% CI"), Column("meaning", left=True)])
    ci = cal.derived_ci95
    derived.rows += [
        (["α"], [f"{cal.alpha * 1e3:.4g} ms", _scaled(ci, "alpha", 1e3),
                 "mixed-iteration intercept"]),
        (["β"], [f"{cal.beta * 1e3:.4g} ms/token", _scaled(ci, "beta", 1e3),
                 "cost per chunk token"]),
        (["γ"], [f"{cal.gamma:.4g} /s", _scaled(ci, "gamma", 1.0),
                 f"1/τ_solo({cal.max_batch})"]),
        (["gap"], [f"{cal.secant_max_rel_gap:.2%}", "",
                   f"line vs τ_mix(C, {cal.max_batch - 1}), relative"]),
    ]
    return quality, coefficients, derived


def render(cal: Calibration, console: Console) -> None:
    """Curve quality, coefficients, derived constants and warnings, at the terminal's width
    (`tablefit`: split or laid out as records rather than cut)."""
    quality, coefficients, derived = _sheets(cal)
    for sheet in (quality, coefficients, derived):
        for part in fit(sheet, console.width):
            console.print(part, soft_wrap=True)  # laid out already: no re-wrapping
        if sheet is quality:
            console.print(f"τ_solo form: {cal.solo.selection}", style="dim", highlight=False)
            console.print(f"τ_mix form: {cal.mix.selection}", style="dim", highlight=False)
    console.print(cal.chunk_range_note, style="dim", highlight=False)
    for warning in cal.warnings:  # may quote input files: no markup, controls escaped
        console.print(Text.assemble(("warning:", "yellow"), " ", safe_text(warning)),
                      highlight=False)


def _scaled(ci: dict[str, tuple[float, float]], name: str, factor: float) -> str:
    if name not in ci:
        return "n/a"
    lo, hi = ci[name]
    return f"[{lo * factor:.4g}, {hi * factor:.4g}]"
