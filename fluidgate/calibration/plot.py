"""A picture of the fit: measured points, fitted curves, and the LP's straight line.

The numbers in the calibration file say *how well* the curves fit; the plot shows *where*
they miss, which is what tells an operator whether the chunk range or the batch limit they
serve sits in a well-measured region. Rendering uses the Agg canvas directly, so it neither
needs a display nor changes matplotlib's global backend for the rest of the process.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fluidgate.atomic import write_bytes_atomic
from fluidgate.calibration.fit import Calibration

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def render_png(cal: Calibration, title: str = "") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    _solo_panel(left, cal)
    _mix_panel(right, cal)
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_png(path: Path, cal: Calibration, title: str = "") -> Path:
    return write_bytes_atomic(path, render_png(cal, title))


def _log_if_wide(ax: Axes, values: np.ndarray, axis: str) -> bool:
    positive = values[values > 0]
    wide = positive.size > 0 and positive.max() / positive.min() > 20
    if wide and axis == "x":
        ax.set_xscale("log")
    elif wide:
        ax.set_yscale("log")
    return bool(wide)


def _solo_panel(ax: Axes, cal: Calibration) -> None:
    solo = cal.solo
    b_all = np.concatenate([solo.b, [float(cal.max_batch)], [p[0] for p in solo.dropped]])
    # A linear axis, so that an affine fit looks straight and a hinge looks like a hinge.
    grid = np.linspace(0.0, float(b_all.max()), 400)
    ax.plot(solo.b, solo.y * 1e3, "o", color="C0", label="decode-only batches")
    _plot_dropped(ax, [p[0] for p in solo.dropped], [p[2] for p in solo.dropped])
    ax.plot(
        grid,
        solo.predict(grid) * 1e3,
        "-",
        color="C0",
        label=f"{solo.form.name} fit, R² {solo.r2:.3f}",
    )
    ax.axvline(cal.max_batch, color="0.5", ls=":", lw=1)
    ax.plot(
        [cal.max_batch],
        [cal.tau_solo_at_b * 1e3],
        "s",
        color="k",
        label=f"τ_solo(B={cal.max_batch}) = {cal.tau_solo_at_b * 1e3:.3g} ms",
    )
    ax.set_xlabel("decode streams b")
    ax.set_ylabel("iteration time (ms)")
    ax.set_title(f"τ_solo(b): γ = {cal.gamma:.4g} /s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _plot_dropped(ax: Axes, xs: list[float], times_s: list[float]) -> None:
    """Points the outlier test left out, marked so nobody mistakes them for fitted ones."""
    if xs:
        ax.plot(xs, [t * 1e3 for t in times_s], "x", color="C3", ms=9,
                label="left out (outlier)")


def _mix_panel(ax: Axes, cal: Calibration) -> None:
    mix = cal.mix
    lo_r, hi_r = cal.chunk_range
    c_all = np.concatenate([mix.chunk, [lo_r, hi_r]])
    log_x = _log_if_wide(ax, c_all, "x")
    _log_if_wide(ax, np.concatenate([mix.y, [p[2] for p in mix.dropped]]), "y")
    lo, hi = float(c_all.min()), float(c_all.max())
    grid = np.geomspace(lo, hi, 400) if log_x else np.linspace(lo, hi, 400)
    levels = np.unique(mix.b)
    for i, level in enumerate(levels):
        color = f"C{(i + 1) % 10}"
        sel = mix.b == level
        ax.plot(
            mix.chunk[sel], mix.y[sel] * 1e3, "o", color=color, label=f"chunk + {level:g} decodes"
        )
        ax.plot(grid, mix.predict(np.full_like(grid, level), grid) * 1e3, "-", color=color, lw=1)
    _plot_dropped(ax, [p[1] for p in mix.dropped], [p[2] for p in mix.dropped])
    ax.plot(
        grid,
        cal.tau_mix_at(grid) * 1e3,
        "--",
        color="k",
        label=f"τ_mix(C, B−1 = {cal.max_batch - 1})",
    )
    span = np.linspace(lo_r, hi_r, 200)
    ax.plot(
        span,
        (cal.alpha + cal.beta * span) * 1e3,
        "-",
        color="C3",
        lw=2.5,
        alpha=0.7,
        label=f"LP line α + β·C (max gap {cal.secant_max_rel_gap:.1%})",
    )
    ax.set_xlabel("prefill chunk C (tokens)")
    ax.set_ylabel("iteration time (ms)")
    ax.set_title(f"τ_mix: α = {cal.alpha * 1e3:.4g} ms, β = {cal.beta * 1e3:.4g} ms/token")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
