"""The report's figure: measured next to predicted and simulated (matplotlib, headless)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

BLOCKS = ("measured", "predicted", "simulated")


def comparison(report: dict[str, Any], path: Path) -> Path:
    """Revenue per GPU, served rate and mean TTFT per class, one bar per block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fluidgate.atomic import write_bytes_atomic

    blocks = [b for b in BLOCKS if report.get(b)]
    names = list(report["measured"]["classes"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    axes[0].bar(blocks, [report[b]["revenue_per_gpu"] for b in blocks],
                color=["C0", "C1", "C2"][:len(blocks)])
    axes[0].set_title("revenue per GPU per s")
    x = np.arange(len(names))
    width = 0.8 / len(blocks)
    for j, b in enumerate(blocks):
        cls = report[b]["classes"]
        served = [cls[n]["served"] for n in names]
        ttft = [cls[n]["ttft"]["mean"] or 0.0 for n in names]
        axes[1].bar(x + j * width, served, width, label=b)
        axes[2].bar(x + j * width, ttft, width, label=b)
    for ax, title in ((axes[1], "served, requests/s"), (axes[2], "mean TTFT, s")):
        ax.set_xticks(x + width * (len(blocks) - 1) / 2, names)
        ax.set_title(title)
    # one legend under the panels: inside a panel it hid the tallest bars
    fig.legend(*axes[1].get_legend_handles_labels(), loc="lower center", ncol=len(blocks),
               bbox_to_anchor=(0.5, -0.06), frameon=False)
    fig.suptitle(f"{report['policy']} — {report['gpus']} GPUs, {report['duration']:g} s "
                 "(model time)")
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())
