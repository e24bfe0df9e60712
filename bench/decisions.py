"""Decisions per second of the runtime gate and router: `python bench/decisions.py [--out F]`.

Measures, for K = 2, 8 and 100 classes (docs/performance.md, "Runtime gate and router"):

1. the Python interface (`Controller`), on the Python rules and on the numba-compiled ones
   (`compiled=True`): a steady loop of one request lifecycle — `next_prefill` (a gate
   decision), `place_decode` (a route decision), `on_finish`, `on_arrival` — with every
   class waiting, so each gate decision scans all K classes;
2. the compiled rules called from a compiled loop, as a simulator calls them: the
   occupancy-deficit gate with its state updated between decisions, and the SLI router.

Specs are hand-made (`tests/controller_specs.py`) with seeded random targets: the timings
depend on K, not on the numbers. Medians of repeated runs; results as a table and,
with `--out`, as JSON with the machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python bench/decisions.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numba
import numpy as np

from bench.records import OVERWRITE_HELP, refuse_existing, write_record
from bench.run import machine_info
from fluidgate.controllers import rules
from fluidgate.controllers.runtime import Controller
from fluidgate.controllers.spec import ControllerSpec, RouterRule
from tests.controller_specs import Cls, make_spec

SCHEMA = "fluidgate.bench.decisions/v1"
CLASS_COUNTS = (2, 8, 100)


def spec_for(k: int, router: RouterRule, seed: int = 0) -> ControllerSpec:
    rng = np.random.default_rng(seed)
    classes = [Cls(prefill=float(rng.uniform(0.5, 5.0)), prefill_queue=float(rng.uniform(0, 2)),
                   p_solo=float(rng.uniform(0, 1))) for _ in range(k)]
    return make_spec(classes, router=router, gpus=1000, mixed=200)


def lifecycle_rate(spec: ControllerSpec, compiled: bool, cycles: int) -> float:
    """Request lifecycles per second through the Python interface (2 decisions each)."""
    c = Controller.from_spec(spec, rng=np.random.default_rng(1), compiled=compiled)
    k = len(spec.classes)
    for i in range(4 * k):
        c.on_arrival(i % k)
    for _ in range(2 * k):  # some prefills running, so deficits differ between classes
        c.next_prefill()
    start = time.perf_counter()
    for _ in range(cycles):
        adm = c.next_prefill()
        assert adm is not None
        c.place_decode(adm.ticket, 1, 1)
        c.on_finish(adm.ticket)
        c.on_arrival(adm.cls)
    return cycles / (time.perf_counter() - start)


def _gate_loop(gate: Callable[..., int]) -> Callable[..., int]:
    def loop(waiting: Any, running: Any, tx: Any, tq: Any, n: int) -> int:
        k = waiting.shape[0]
        checksum = 0
        for it in range(n):
            i = gate(waiting, running, tx, tq, 0, 0.0)  # no decode waits
            waiting[i] -= 1
            running[i] += 1
            j = (it * 7919) % k  # a prefill of class j (if any) finishes; class i arrives
            if running[j] > 0:
                running[j] -= 1
            waiting[i] += 1
            checksum += i
        return checksum

    return loop


def _route_loop(route: Callable[..., int]) -> Callable[..., int]:
    def loop(p_solo: Any, u: Any, n: int) -> int:
        k = p_solo.shape[0]
        m = u.shape[0]
        checksum = 0
        for it in range(n):
            checksum += route(p_solo[it % k], u[it % m], it % 3, (it // 3) % 2)
        return checksum

    return loop


def compiled_rates(k: int, n: int) -> tuple[float, float]:
    """Gate and route decisions per second from a compiled loop (compilation excluded)."""
    spec = spec_for(k, RouterRule.SLI_SPLIT)
    tx = np.array([c.targets.prefill for c in spec.classes])
    tq = np.array([c.targets.prefill_queue for c in spec.classes])
    p = np.array([c.p_solo for c in spec.classes])
    gate = rules.jit(_gate_loop(rules.jit(rules.gate_deficit)))
    route = rules.jit(_route_loop(rules.jit(rules.route_sli)))
    u = np.random.default_rng(2).random(4096)

    def state() -> tuple[Any, ...]:
        return (np.full(k, 3, dtype=np.int64), np.zeros(k, dtype=np.int64), tx, tq)

    gate(*state(), 10)  # compile
    route(p, u, 10)
    start = time.perf_counter()
    gate(*state(), n)
    gate_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    route(p, u, n)
    return gate_rate, n / (time.perf_counter() - start)


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="repetitions per measurement")
    ap.add_argument("--cycles", type=int, default=20_000, help="lifecycles per Python run")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    args = ap.parse_args(argv)
    if args.out:
        refuse_existing(ap, args.out, args.overwrite)  # before measuring
    started = dt.datetime.now(dt.UTC)
    load_start = list(os.getloadavg())
    results: list[dict[str, Any]] = []
    print(f"{'K':>4} {'python rules':>14} {'compiled rules':>15} {'compiled loop':>14}"
          f" {'':>14}")
    print(f"{'':>4} {'lifecycles/s':>14} {'lifecycles/s':>15} {'gate dec./s':>14}"
          f" {'route dec./s':>14}")
    for k in CLASS_COUNTS:
        spec = spec_for(k, RouterRule.SOLO_FIRST)
        py = median_of(args.runs, lambda spec=spec: lifecycle_rate(spec, False, args.cycles))
        lifecycle_rate(spec, True, 10)  # compile outside the measurement
        jt = median_of(args.runs, lambda spec=spec: lifecycle_rate(spec, True, args.cycles))
        gates, routes = zip(*(compiled_rates(k, 2_000_000) for _ in range(args.runs)),
                            strict=True)
        row = {"classes": k, "python_lifecycles_per_s": py, "compiled_lifecycles_per_s": jt,
               "compiled_gate_decisions_per_s": statistics.median(gates),
               "compiled_route_decisions_per_s": statistics.median(routes)}
        results.append(row)
        print(f"{k:>4} {py:>14,.0f} {jt:>15,.0f} {row['compiled_gate_decisions_per_s']:>14,.0f}"
              f" {row['compiled_route_decisions_per_s']:>14,.0f}")
    print("(a lifecycle is 2 decisions and 4 calls: next_prefill, place_decode, on_finish, "
          "on_arrival)")
    if args.out:
        payload = {"schema": SCHEMA, "started": started.isoformat(timespec="seconds"),
                   "machine": machine_info(), "numba": numba.__version__,
                   "load_at_start": load_start,
                   "load_at_end": list(os.getloadavg()), "runs": args.runs,
                   "cycles": args.cycles, "results": results}
        write_record(args.out, payload, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
