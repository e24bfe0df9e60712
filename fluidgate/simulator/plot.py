"""PNG figures of a study and of one run (matplotlib, headless).

The convergence figure carries a power law fitted to gate-and-route's gaps and a `1/√n` curve
through its largest size, so a reader sees how fast the gap actually closes next to the rate
the theory suggests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fluidgate.simulator.common import I_PREFILL
from fluidgate.simulator.report import OccupancyRecord, PolicySummary
from fluidgate.simulator.run import RunResult

GATE_AND_ROUTE = "gate-and-route"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _save(fig: Any, path: Path, inputs: Sequence[Path] = ()) -> Path:
    from fluidgate.atomic import write_output

    write_output(path, _png(fig), inputs=inputs)
    return path


def convergence(summary: list[PolicySummary], r_star: float) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for policy in dict.fromkeys(s.policy for s in summary):
        rows = sorted((s for s in summary if s.policy == policy), key=lambda s: s.n)
        n = np.array([s.n for s in rows], float)
        mean = np.array([s.ratio for s in rows])
        err = np.array([[s.mean - s.ci_low for s in rows], [s.ci_high - s.mean for s in rows]])
        style = {"lw": 2.2, "zorder": 3} if policy == GATE_AND_ROUTE else {"lw": 1.2, "alpha": .8}
        ax.errorbar(n, mean, yerr=err / r_star, marker="o", ms=4, capsize=3, label=policy,
                    **style)
    gr = [s for s in sorted(summary, key=lambda s: s.n)
          if s.policy == GATE_AND_ROUTE and s.ratio < 1]
    if len(gr) >= 2:
        n_gr = np.array([s.n for s in gr], float)
        gaps = np.array([1 - s.ratio for s in gr])
        slope, icpt = np.polyfit(np.log(n_gr), np.log(gaps), 1)
        grid = np.geomspace(n_gr[0], n_gr[-1], 50)
        ax.plot(grid, 1 - np.exp(icpt) * grid ** slope, "k--", lw=1,
                label=f"fit: gap ∝ n^{slope:.2f}")
        c = gaps[-1] * math.sqrt(n_gr[-1])
        ax.plot(grid, 1 - c / np.sqrt(grid), "k:", lw=1, label="1/√n through the largest n")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylim(min(s.ci_low for s in summary) / r_star - 0.01, 1.005)
    ax.set_xscale("log")
    ax.set_xlabel("GPUs n")
    ax.set_ylabel("revenue per GPU / R*")
    ax.set_title(f"Revenue against the fluid bound R* = {r_star:.4g} per GPU per s (95 % CI)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def occupancy(records: list[OccupancyRecord]) -> bytes:
    plt = _pyplot()
    names = list(dict.fromkeys(r.name for r in records))
    sizes = sorted({r.n for r in records})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(names), 1)
    shown: list[float] = []
    for j, name in enumerate(names):
        rel = [next(r.measured / r.target if r.target > 0 else np.nan
                    for r in records if r.n == n and r.name == name) for n in sizes]
        shown.extend(v for v in rel if np.isfinite(v))
        ax.bar(np.arange(len(sizes)) + j * width, rel, width, label=name)
    if shown:  # zoom on the ±5 % band, keeping every bar's top in view
        ax.set_ylim(min(0.9, min(shown) - 0.03), max(1.1, max(shown) + 0.03))
    ax.axhline(1.0, color="k", lw=1)
    ax.axhspan(0.95, 1.05, color="green", alpha=0.1, label="±5 %")
    ax.set_xticks(np.arange(len(sizes)) + width * (len(names) - 1) / 2, [str(n) for n in sizes])
    ax.set_xlabel("GPUs n")
    ax.set_ylabel("running prefills / n·x*")
    ax.set_title("gate-and-route: prefill occupancy against the plan's target")
    ax.legend(fontsize=8)
    return _png(fig)


def baselines(summary: list[PolicySummary], r_star: float) -> bytes:
    plt = _pyplot()
    n = max(s.n for s in summary)
    rows = sorted((s for s in summary if s.n == n), key=lambda s: -s.mean)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    y = np.arange(len(rows))
    ax.barh(y, [s.ratio for s in rows],
            xerr=[[(s.mean - s.ci_low) / r_star for s in rows],
                  [(s.ci_high - s.mean) / r_star for s in rows]],
            color=["tab:blue" if s.policy == GATE_AND_ROUTE else "tab:grey" for s in rows],
            capsize=3)
    ax.set_yticks(y, [s.policy for s in rows])
    ax.invert_yaxis()
    lo = min(s.ci_low for s in rows) / r_star
    ax.set_xlim(max(0.0, lo - 0.02), 1.005)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("revenue per GPU / R*")
    ax.set_title(f"Policies at n = {n} (95 % CI over seeds)")
    return _png(fig)


def run_timeline(result: RunResult, targets: list[float], path: Path,
                 inputs: Sequence[Path] = ()) -> Path:
    """Running prefills per class over the measured window, with the plan's targets."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, c in enumerate(result.classes):
        line = ax.plot(result.snapshot_times, result.snapshots[:, I_PREFILL, i], lw=1,
                       label=f"{c.name} running prefills")
        ax.axhline(targets[i], color=line[0].get_color(), ls="--", lw=1,
                   label=f"{c.name} target n·x*")
    ax.set_xlabel("simulated time, s")
    ax.set_ylabel("prefills running")
    ax.set_title(f"{result.policy} on {result.gpus} GPUs ({result.fidelity}, seed {result.seed})")
    ax.legend(fontsize=8)
    return _save(fig, path)
