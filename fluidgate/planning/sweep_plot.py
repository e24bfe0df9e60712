"""PNG figures of a sweep (matplotlib, headless): a front for one parameter, a heat map for two.

Along an SLO bound, R* against the bound is the Pareto front of revenue against service
level: every point on it is the best revenue at that level, and its slope is the SLO's
shadow price. Points without a verified optimum are marked on the axis, not interpolated.
"""

from __future__ import annotations

import math
from io import BytesIO
from typing import Any

from fluidgate.planning.sweep import SweepResult
from fluidgate.planning.vary import Vary


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axis(v: Vary) -> str:
    if v.unit:
        return f"{v.label} ({v.unit})"
    return f"{v.label} (scale)" if v.kind.value in ("rate", "price") else v.label


def _display(v: Vary, x: float) -> float:
    return x if v.kind.value in ("rate", "price", "gpus") else x / v.unit_scale


def _edges(v: Vary) -> tuple[float, float]:
    xs = [_display(v, x) for x in v.values]
    half = (xs[-1] - xs[0]) / (len(xs) - 1) / 2 if len(xs) > 1 else 0.5
    return xs[0] - half, xs[-1] + half


def sweep_plot(result: SweepResult) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    v0 = result.varies[0]
    if len(result.varies) == 1:
        xs = [_display(v0, p.values[v0.label]) for p in result.points]
        ys = [p.r_star if p.optimal and p.r_star is not None else math.nan
              for p in result.points]
        ax.plot(xs, ys, marker="o", markersize=3, color="#1f77b4", label="R* (verified optimum)")
        bad = [x for x, y in zip(xs, ys, strict=True) if math.isnan(y)]
        if bad:
            ax.plot(bad, [0.0] * len(bad), "x", color="#d62728", label="no plan (infeasible)")
        ax.set_xlabel(_axis(v0))
        ax.set_ylabel("R* per GPU per second")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    else:
        v1 = result.varies[1]
        n0, n1 = len(v0.values), len(v1.values)
        grid = [[math.nan] * n1 for _ in range(n0)]
        for p in result.points:
            i, j = divmod(p.index, n1)
            if p.optimal and p.r_star is not None:
                grid[i][j] = p.r_star
        extent = (*_edges(v1), *_edges(v0))  # each cell centred on its value
        image = ax.imshow(grid, origin="lower", aspect="auto", extent=extent,
                          cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax, label="R* per GPU per second (blank: no plan)")
        ax.set_xlabel(_axis(v1))
        ax.set_ylabel(_axis(v0))
    ax.set_title("fluidgate sweep", fontsize=10)
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
