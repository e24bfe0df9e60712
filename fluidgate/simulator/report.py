"""The simulator's documents: one run (`fluidgate.simulation/v1`) and a study
(`fluidgate.validation/v1`), following the pattern of `calibration/schema.py`.

Measured numbers sit next to the plan's predictions (the spec's `predicted` block, which the
solver filled from the one metrics module), in the same units: requests per second and
requests for the cluster, seconds for latencies. Confidence intervals over seeds are
Student-t intervals of the mean (independent seeds, so the runs are i.i.d. replicas).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fluidgate.controllers.spec import ControllerSpec
from fluidgate.simulator.run import RunResult

SIMULATION_SCHEMA = "fluidgate.simulation/v1"
VALIDATION_SCHEMA = "fluidgate.validation/v1"

_MODEL = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, populate_by_name=True)


class ClassRecord(BaseModel):
    """One class over the measured window, cluster-wide."""

    model_config = _MODEL

    name: str
    arrivals: float = Field(description="requests/s")
    admitted: float = Field(description="prefill completions, requests/s")
    served: float = Field(description="completed requests/s")
    abandonment: float | None = Field(description="share of arrivals that left")
    abandoned_prefill: float = Field(description="left while waiting for prefill, requests/s")
    abandoned_decode: float = Field(description="left after prefill, waiting to decode, req/s")
    prefilling: float = Field(description="time-average prefills running (target n·x*)")
    decoding_mixed: float = Field(description="time-average decodes on prefilling GPUs")
    decoding_solo: float = Field(description="time-average decodes on other GPUs")
    waiting_prefill: float = Field(description="time-average prefill queue")
    waiting_decode: float = Field(description="time-average decode buffers")
    ttft_mean: float | None = Field(description="s, from arrival to the end of prefill")
    ttft_p50: float | None = None
    ttft_p90: float | None = None
    ttft_p99: float | None = None
    tpot_mean: float | None = Field(description="s per output token, decode start to finish")
    tpot_p50: float | None = None
    tpot_p90: float | None = None
    tpot_p99: float | None = None


class RunRecord(BaseModel):
    model_config = _MODEL

    policy: str
    fidelity: str
    n: int = Field(description="GPUs")
    mixed_gpus: int
    seed: int
    revenue_per_gpu: float = Field(description="money per GPU per second")
    warmup: float = Field(description="s simulated and discarded")
    duration: float = Field(description="s measured")
    events: int
    gpu_iterations: int
    wall_s: float
    classes: list[ClassRecord] = Field(default_factory=list)


class SimulationReport(BaseModel):
    model_config = _MODEL

    schema_: str = Field(default=SIMULATION_SCHEMA, alias="schema")
    generator: str
    spec_policy: str = Field(description="the policy the spec was solved from")
    r_star: float = Field(description="the plan's objective per GPU per s")
    predicted_revenue_per_gpu: float
    run: RunRecord


class PolicySummary(BaseModel):
    model_config = _MODEL

    policy: str
    n: int
    seeds: int
    mean: float = Field(description="mean revenue per GPU per s over seeds")
    ci_low: float
    ci_high: float
    ratio: float = Field(description="mean / R*")


class OccupancyRecord(BaseModel):
    model_config = _MODEL

    n: int
    name: str
    measured: float = Field(description="mean over seeds of time-average running prefills")
    target: float = Field(description="n·x*")


class ValidationReport(BaseModel):
    model_config = _MODEL

    schema_: str = Field(default=VALIDATION_SCHEMA, alias="schema")
    generator: str
    policy: str = Field(description="the policy file studied")
    r_star: float = Field(description="optimal revenue per GPU per second (the LP)")
    fidelity: str
    gpus: list[int]
    seeds: int
    runs: list[RunRecord]
    summary: list[PolicySummary]
    occupancy: list[OccupancyRecord]
    plots: list[str] = Field(default_factory=list)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def run_record(r: RunResult) -> RunRecord:
    classes = []
    per = 1.0 / r.duration
    for c in r.classes:
        left = c.abandoned_prefill + c.abandoned_decode
        classes.append(ClassRecord(
            name=c.name, arrivals=c.arrivals * per, admitted=c.admitted * per,
            served=c.served * per, abandonment=left / c.arrivals if c.arrivals else None,
            abandoned_prefill=c.abandoned_prefill * per, abandoned_decode=c.abandoned_decode * per,
            prefilling=c.prefilling, decoding_mixed=c.decoding_mixed,
            decoding_solo=c.decoding_solo, waiting_prefill=c.waiting_prefill,
            waiting_decode=c.waiting_decode, ttft_mean=_finite(c.ttft_mean),
            ttft_p50=c.ttft_pct.get(50.0), ttft_p90=c.ttft_pct.get(90.0),
            ttft_p99=c.ttft_pct.get(99.0), tpot_mean=_finite(c.tpot_mean),
            tpot_p50=c.tpot_pct.get(50.0), tpot_p90=c.tpot_pct.get(90.0),
            tpot_p99=c.tpot_pct.get(99.0)))
    return RunRecord(
        policy=str(r.policy), fidelity=str(r.fidelity), n=r.gpus, mixed_gpus=r.mixed_gpus,
        seed=r.seed, revenue_per_gpu=r.revenue_per_gpu, warmup=r.warmup, duration=r.duration,
        events=r.events, gpu_iterations=r.steps, wall_s=r.wall_s, classes=classes)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and its Student-t interval; a single value has no interval (both ends = mean)."""
    from fluidgate.calibration.curves import t_quantile

    m = len(values)
    mean = math.fsum(values) / m
    if m < 2:
        return mean, mean, mean
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (m - 1))
    half = t_quantile(m - 1, level) * sd / math.sqrt(m)
    return mean, mean - half, mean + half


def summarise(runs: Sequence[RunRecord], r_star: float) -> list[PolicySummary]:
    groups: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        groups.setdefault((r.policy, r.n), []).append(r.revenue_per_gpu)
    out = []
    for (policy, n), values in groups.items():
        mean, lo, hi = mean_ci(values)
        out.append(PolicySummary(policy=policy, n=n, seeds=len(values), mean=mean, ci_low=lo,
                                 ci_high=hi, ratio=mean / r_star if r_star else 0.0))
    return out


def occupancy(runs: Sequence[RunRecord], spec: ControllerSpec, policy: str
              ) -> list[OccupancyRecord]:
    """Measured prefill occupancy of `policy` per n and class, next to `n·x*`."""
    out = []
    for n in sorted({r.n for r in runs if r.policy == policy}):
        mine = [r for r in runs if r.policy == policy and r.n == n]
        for i, c in enumerate(spec.classes):
            measured = math.fsum(r.classes[i].prefilling for r in mine) / len(mine)
            target = c.targets.prefill * n / spec.cluster.gpus
            out.append(OccupancyRecord(n=n, name=c.name, measured=measured, target=target))
    return out


def dump_report(report: BaseModel) -> str:
    payload = report.model_dump(mode="json", by_alias=True)
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def save_report(path: Path, report: BaseModel, inputs: Sequence[Path] = ()) -> Path:
    """Written atomically (a reader never sees half a report), never over one of `inputs`."""
    from fluidgate.atomic import write_output

    write_output(path, dump_report(report), inputs=inputs)
    return path
