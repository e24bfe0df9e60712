"""The groups over the trace's scatter (log-log): does each class sit where its requests are?

Drawn on the Agg canvas directly, so no display is needed and matplotlib's global backend
is left alone. A trace of millions of requests is thinned to a fixed, seeded sample for the
scatter; the class means are computed from every request.
"""

from __future__ import annotations

import io

import numpy as np

from fluidgate.planning.derive import Derivation

MAX_POINTS = 60_000


def render_png(d: Derivation, title: str = "") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = d.trace
    shown = np.arange(t.requests)
    if t.requests > MAX_POINTS:
        shown = np.sort(np.random.default_rng(d.seed).choice(t.requests, MAX_POINTS,
                                                             replace=False))
    fig = Figure(figsize=(7.5, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter(np.maximum(t.prompt[shown], 1), np.maximum(t.output[shown], 1),
               c=d.labels[shown] % 20, cmap="tab20", s=3, alpha=0.35, linewidths=0,
               rasterized=True)
    rates = np.array([c.rate for c in d.classes])
    sizes = 40 + 360 * rates / rates.max()
    xs = [c.prompt for c in d.classes]
    ys = [c.output for c in d.classes]
    ax.scatter(xs, ys, s=sizes, facecolors="none", edgecolors="black", linewidths=1.4,
               label="class mean (area ∝ rate)")
    if len(d.classes) <= 32:
        for c in d.classes:
            ax.annotate(c.name, (c.prompt, c.output), xytext=(6, 4),
                        textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("output tokens")
    ax.set_title(title or f"{len(d.classes)} classes over {t.requests:,} requests")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
