"""One simulation run: options in, measured numbers out, whichever fidelity does the work.

The loops (`ctmc.py`, `iteration.py`) fill preallocated arrays; this module sizes them,
retries with larger queue storage when a queue outgrows it (same seed, so the same run),
and turns the arrays into a `RunResult` of per-class counts, time averages and latency
percentiles over the measurement window (the warm-up is discarded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from fluidgate.controllers.spec import ControllerSpec
from fluidgate.model import IterationCurve
from fluidgate.simulator import common as cm
from fluidgate.simulator.config import (
    Instance,
    SimulationInputError,
    build_instance,
    check_routable,
    controller_for,
    spec_at,
    spec_curves,
    whole_tokens,
)
from fluidgate.simulator.jitcache import ensure_compiled
from fluidgate.simulator.names import Fidelity, PolicyName
from fluidgate.simulator.structures import N_FIELDS
from fluidgate.simulator.trace import Trace

# Queue storage starts at this many requests per queue and grows fourfold up to the limit
# (by default what fits in QUEUE_BYTES); a longer queue means a class without patience is
# not being served, and the run is refused rather than left to grow without bound.
QUEUE_START = 1024
QUEUE_BYTES = 256 * 1024 * 1024
PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(frozen=True)
class RunOptions:
    policy: PolicyName = PolicyName.GATE_AND_ROUTE
    fidelity: Fidelity = Fidelity.CTMC
    gpus: int | None = None  # default: the spec's cluster size
    seed: int = 0
    duration: float | None = None  # measured seconds; default from `arrivals`
    warmup: float | None = None  # default: 10 relaxation times
    arrivals: float = 400_000.0  # expected arrivals in the measured window (default duration)
    samples: int = 200_000  # latency observations kept for percentiles, per metric
    snapshots: int = 200
    trace: Trace | None = None
    max_queue: int | None = None  # requests one queue may hold; default from QUEUE_BYTES
    # (solo, mixed) iteration curves; default: the spec's, else its α, β, τ_solo
    curves: tuple[IterationCurve, IterationCurve] | None = None


@dataclass(frozen=True)
class ClassResult:
    name: str
    arrivals: int
    admitted: int
    served_mixed: int
    served_solo: int
    abandoned_prefill: int
    abandoned_decode: int
    prefilling: float  # time averages over the window, cluster-wide
    decoding_mixed: float
    decoding_solo: float
    waiting_prefill: float
    waiting_decode: float
    ttft_mean: float | None
    tpot_mean: float | None
    ttft_pct: dict[float, float] = field(default_factory=dict)
    tpot_pct: dict[float, float] = field(default_factory=dict)

    @property
    def served(self) -> int:
        return self.served_mixed + self.served_solo


@dataclass(frozen=True)
class RunResult:
    policy: PolicyName
    fidelity: Fidelity
    gpus: int
    mixed_gpus: int
    seed: int
    warmup: float
    duration: float
    events: int
    steps: int  # GPU iterations (iteration level); 0 for ctmc
    wall_s: float
    revenue: float  # money earned in the window, cluster-wide
    classes: tuple[ClassResult, ...]
    snapshot_times: NDArray[np.float64]
    snapshots: NDArray[np.float64]  # (time, quantity I_*, class), cluster-wide counts

    @property
    def revenue_per_gpu(self) -> float:
        """Money per GPU per second over the measured window."""
        return self.revenue / (self.gpus * self.duration)


def _window(inst: Instance, opts: RunOptions) -> tuple[float, float]:
    warmup = opts.warmup if opts.warmup is not None else 10.0 * inst.relaxation_time()
    if opts.trace is not None and opts.duration is None:
        duration = max(float(opts.trace.times[-1]) - warmup, 0.0)
    elif opts.duration is not None:
        duration = opts.duration
    else:
        duration = max(opts.arrivals / inst.arrival_rate, 10.0 * inst.relaxation_time())
    if not duration > 0:
        raise SimulationInputError(
            f"duration: the measured window after the {warmup:g} s warm-up is empty")
    if warmup < 0:
        raise SimulationInputError(f"warmup: {warmup:g} s is negative")
    return warmup, duration


def simulate(spec: ControllerSpec, opts: RunOptions) -> RunResult:
    """Run one seed of one policy at one fidelity; refuses what it cannot represent."""
    if opts.gpus is not None:
        spec = spec_at(spec, opts.gpus)
    inst = build_instance(spec)
    ctl = controller_for(opts.policy, spec)
    check_routable(spec, ctl)
    if opts.fidelity is Fidelity.ITERATION:
        whole_tokens(spec)
    trace_t = np.zeros(0)
    trace_c = np.zeros(0, np.int64)
    trace_len = np.zeros((0, 2), np.int64)
    if opts.trace is not None:
        opts.trace.check_classes(inst.names)
        trace_t, trace_c = opts.trace.times, opts.trace.classes
        trace_len = np.column_stack([opts.trace.prompts, opts.trace.outputs]).astype(np.int64)
    warmup, duration = _window(inst, opts)
    k = len(inst.names)
    p_int = np.zeros(cm.N_PINT, np.int64)
    p_int[[cm.P_GPUS, cm.P_BATCH, cm.P_MIXED, cm.P_GATE, cm.P_ROUTER, cm.P_SEED,
           cm.P_SNAPS]] = [inst.gpus, inst.max_batch, ctl.mixed_gpus, ctl.gate, ctl.router,
                           opts.seed, opts.snapshots]
    tx = np.ascontiguousarray(inst.cls[:, cm.C_TARGET_X])
    tq = np.ascontiguousarray(inst.cls[:, cm.C_TARGET_Q])
    rank = inst.cls[:, cm.C_RANK].astype(np.int64)
    p_int[cm.P_BUNDLED] = int(spec.pricing == "bundled")
    p_flt = np.array([warmup + duration, warmup, duration / max(opts.snapshots, 1)])
    limit = opts.max_queue or max(QUEUE_START, QUEUE_BYTES // (3 * k * N_FIELDS * 8))
    cap = min(QUEUE_START, limit)
    while True:
        out = _Outputs(k, opts.samples, opts.snapshots)
        qrec = np.zeros((3 * k, cap, N_FIELDS))
        t0 = time.perf_counter()
        if opts.fidelity is Fidelity.CTMC:
            from fluidgate.simulator.ctmc import run_ctmc

            args = (p_int, p_flt, inst.cls, tx, tq, rank, trace_t, trace_c, qrec, out.counts,
                    out.integ, out.sums, out.samples, out.nsamp, out.snaps, out.money,
                    out.info)
            ensure_compiled(run_ctmc, args)
            run_ctmc(*args)
        else:
            from fluidgate.simulator.iteration import run_iteration, timing_table

            solo, mix = timing_table(inst, opts.curves or spec_curves(spec))
            it_args = (p_int, p_flt, inst.cls, tx, tq, rank, trace_t, trace_c, trace_len,
                       solo, mix, qrec, out.counts, out.integ, out.sums, out.samples,
                       out.nsamp, out.snaps, out.money, out.info)
            ensure_compiled(run_iteration, it_args)
            run_iteration(*it_args)
        wall = time.perf_counter() - t0
        if out.info[cm.INFO_STATUS] == cm.STATUS_OK:
            break
        if cap >= limit:
            q = int(out.info[cm.INFO_QUEUE])
            raise SimulationInputError(
                f"classes[{q % k}] ('{inst.names[q % k]}'): more than {limit:,} requests "
                "wait in one queue; the cluster cannot serve this class and nobody leaves")
        cap = min(cap * 4, limit)
    return _result(inst, ctl.mixed_gpus, opts, warmup, duration, out, wall)


class _Outputs:
    def __init__(self, k: int, samples: int, snapshots: int) -> None:
        self.counts = np.zeros((k, cm.N_COUNTS), np.int64)
        self.integ = np.zeros((k, cm.N_INTEG))
        self.sums = np.zeros((k, 4))
        self.samples = np.zeros((2, 2, samples))
        self.nsamp = np.zeros(2, np.int64)
        self.snaps = np.zeros((snapshots, cm.N_INTEG, k))
        self.money = np.zeros(1)
        self.info = np.zeros(4, np.int64)


def _percentiles(values: NDArray[np.float64]) -> dict[float, float]:
    if values.size == 0:
        return {}
    return {p: float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES),
                                        strict=True)}


def _result(inst: Instance, mixed_gpus: int, opts: RunOptions, warmup: float,
            duration: float, out: _Outputs, wall: float) -> RunResult:
    classes = []
    for i, name in enumerate(inst.names):
        c, g, s = out.counts[i], out.integ[i] / duration, out.sums[i]
        per_class = []
        for which in (0, 1):
            m = int(out.nsamp[which])
            mine = out.samples[which, 0, :m] == i
            per_class.append(out.samples[which, 1, :m][mine])
        classes.append(ClassResult(
            name=name, arrivals=int(c[cm.K_ARRIVED]), admitted=int(c[cm.K_ADMITTED]),
            served_mixed=int(c[cm.K_SERVED_MIXED]), served_solo=int(c[cm.K_SERVED_SOLO]),
            abandoned_prefill=int(c[cm.K_ABANDON_PREFILL]),
            abandoned_decode=int(c[cm.K_ABANDON_DECODE]),
            prefilling=float(g[cm.I_PREFILL]), decoding_mixed=float(g[cm.I_DECODE_MIXED]),
            decoding_solo=float(g[cm.I_DECODE_SOLO]),
            waiting_prefill=float(g[cm.I_QUEUE_PREFILL]),
            waiting_decode=float(g[cm.I_QUEUE_DECODE]),
            ttft_mean=float(s[cm.S_TTFT] / s[cm.S_TTFT_N]) if s[cm.S_TTFT_N] > 0 else None,
            tpot_mean=float(s[cm.S_TPOT] / s[cm.S_TPOT_N]) if s[cm.S_TPOT_N] > 0 else None,
            ttft_pct=_percentiles(per_class[0]), tpot_pct=_percentiles(per_class[1])))
    step = duration / max(opts.snapshots, 1)
    return RunResult(
        policy=opts.policy, fidelity=opts.fidelity, gpus=inst.gpus, mixed_gpus=mixed_gpus,
        seed=opts.seed, warmup=warmup, duration=duration,
        events=int(out.info[cm.INFO_EVENTS]), steps=int(out.info[cm.INFO_STEPS]),
        wall_s=wall, revenue=float(out.money[0]), classes=tuple(classes),
        snapshot_times=warmup + step * np.arange(opts.snapshots, dtype=np.float64),
        snapshots=out.snaps)
