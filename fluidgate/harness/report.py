"""The harness report: measured, predicted and simulated numbers in one shape, side by side.

Each block has `revenue_per_gpu` (money per GPU per second over the window) and per class
`arrivals` and `served` (cluster-wide requests per second), `abandonment` (share of
arrivals that left), and `ttft` and `tpot` as `{mean, p50, p90, p99}` in seconds (the LP
predicts means only: its percentiles are null). The window is `[0, duration)` of model
time from an empty cluster, the same for the harness and the simulator run next to it
(no warm-up discarded in either), so both count the same start-up transient. Revenue counts
what completed inside the window, as the simulator does: a bundled request pays when its
last token arrives; under separate pricing its prompt pays at the first token and each
output token when it arrives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fluidgate.controllers.spec import ControllerSpec
from fluidgate.harness.gateway_metrics import Outcome
from fluidgate.harness.load import RequestRecord

if TYPE_CHECKING:
    from fluidgate.simulator.trace import Trace

PERCENTILES = (50, 90, 99)
Block = dict[str, Any]


def _dist(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()),
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES),
                                                  strict=True)}}


def request_counts(records: Sequence[RequestRecord]) -> dict[str, int]:
    counts = {o.value: 0 for o in Outcome}
    for r in records:
        counts[r.outcome] += 1
    return {"sent": len(records), **counts}


def _revenue(spec: ControllerSpec, r: RequestRecord, duration: float) -> float:
    c = spec.classes[spec.class_index(r.cls)]
    if spec.pricing == "bundled":
        done = r.outcome == Outcome.SERVED and r.finish is not None and r.finish < duration
        return (c.price_input * c.prompt + c.price_output * c.output) if done else 0.0
    money = 0.0
    if r.ttft is not None and r.send + r.ttft < duration:
        money += c.price_input * r.prompt
    money += c.price_output * sum(n for t, n in r.chunks if r.send + t < duration)
    return money


def measured_block(spec: ControllerSpec, records: Sequence[RequestRecord],
                   duration: float) -> Block:
    """The load generator's records over `[0, duration)` on `spec.cluster.gpus` GPUs."""
    n = spec.cluster.gpus
    classes: dict[str, Any] = {}
    for c in spec.classes:
        mine = [r for r in records if r.cls == c.name]
        served = [r for r in mine if r.outcome == Outcome.SERVED]
        in_window = [r for r in served if r.finish is not None and r.finish < duration]
        tpots = [(r.chunks[-1][0] - r.chunks[0][0]) / (r.tokens - 1)
                 for r in served if r.tokens > 1 and len(r.chunks) > 1]
        abandoned = sum(r.outcome == Outcome.ABANDONED for r in mine)
        classes[c.name] = {
            "arrivals": len(mine) / duration, "served": len(in_window) / duration,
            "abandonment": abandoned / len(mine) if mine else 0.0,
            "ttft": _dist([r.ttft for r in served if r.ttft is not None]),
            "tpot": _dist(tpots)}
    revenue = sum(_revenue(spec, r, duration) for r in records)
    return {"revenue_per_gpu": revenue / (n * duration), "classes": classes}


def predicted_block(spec: ControllerSpec) -> Block:
    """The LP's plan at `spec.cluster.gpus` (a spec scaled by `simulator.config.spec_at`)."""
    none = {f"p{p}": None for p in PERCENTILES}
    return {"revenue_per_gpu": spec.revenue_rate, "classes": {c.name: {
        "arrivals": c.predicted.arrivals, "served": c.predicted.served,
        "abandonment": c.predicted.abandonment,
        "ttft": {"mean": c.predicted.ttft, **none}, "tpot": {"mean": c.predicted.tpot, **none}}
        for c in spec.classes}}


def sent_trace(records: Sequence[RequestRecord]) -> Trace | None:
    """The arrivals the load generator sent, as a trace for the simulator (None if none):
    the simulated block then runs the very arrivals the measured one saw, not another
    draw of the same Poisson streams, whose counts differ by a few percent in 600 s, and a
    prefill pool near capacity turns that into a different queue."""
    from fluidgate.simulator.trace import Trace  # the simulator's modules load numba

    if not records:
        return None
    names = tuple(r.cls for r in records)
    return Trace("the load generator's arrivals", np.array([r.send for r in records]), names,
                 np.array([float(r.prompt) for r in records]),
                 np.array([float(r.output) for r in records]),
                 np.zeros(len(records), np.int64))


def simulated_block(result: Any) -> Block:
    """An iteration-level `simulator.run.RunResult` in the same shape."""
    classes: dict[str, Any] = {}
    for c in result.classes:
        def dist(mean: float | None, pct: dict[float, float]) -> dict[str, float | None]:
            return {"mean": mean, **{f"p{p}": pct.get(float(p)) for p in PERCENTILES}}

        abandoned = c.abandoned_prefill + c.abandoned_decode
        classes[c.name] = {
            "arrivals": c.arrivals / result.duration, "served": c.served / result.duration,
            "abandonment": abandoned / c.arrivals if c.arrivals else 0.0,
            "ttft": dist(c.ttft_mean, c.ttft_pct), "tpot": dist(c.tpot_mean, c.tpot_pct)}
    return {"revenue_per_gpu": result.revenue_per_gpu, "classes": classes}


def relative_gap(measured: float, reference: float) -> float | None:
    if reference == 0 or not math.isfinite(reference):
        return None
    return (measured - reference) / reference
