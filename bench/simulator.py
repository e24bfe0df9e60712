"""Simulator speed (docs/performance.md): `python bench/simulator.py [--out FILE] [--quick]`.

On the reference instance (examples/two_class.sli) at n = 500, gate-and-route, one core:
1. `ctmc` events per second (arrivals, prefill and decode completions, abandonments);
2. `iteration` GPU-iterations per second;
3. a straightforward SimPy implementation of the same ctmc model (`bench/simpy_ctmc.py`),
   events per second counted the same way, measured in the same run;
4. peak memory of a ctmc run at n = 5,000, in a fresh process (resident set size growth
   over a warmed-up process, since numba allocates outside Python's tracemalloc).

Each fast measurement is the median of several runs after an unmeasured one that compiles
(or loads from numba's cache) the loop. Rates are per CPU-second of the process (one core,
single-threaded), so that other jobs on a shared machine do not distort them; per
wall-second rates are recorded too. Results go to a JSON file (default
`bench/results/simulator-<date>-<host>.json`) with the machine, and to a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python bench/simulator.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.records import OVERWRITE_HELP, refuse_existing, write_record
from bench.run import machine_info
from fluidgate.controllers.spec import ControllerSpec

ROOT = Path(__file__).resolve().parent.parent
N = 500
TARGETS = {"ctmc_events_per_s": 1_000_000, "ctmc_vs_simpy": 50,
           "iteration_gpu_iterations_per_s": 1_000_000}

_MEMORY_CHILD = """
import resource, sys
sys.path.insert(0, {root!r})
from bench.simulator import reference_spec
from fluidgate.simulator.run import RunOptions, simulate
spec = reference_spec()
simulate(spec, RunOptions(gpus=50, duration=50.0, warmup=1.0))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = simulate(spec, RunOptions(gpus=5000, duration=100.0, warmup=50.0))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, r.events, r.wall_s)
"""


def reference_spec() -> ControllerSpec:
    from fluidgate.controllers.build import build_spec
    from fluidgate.pipeline import solve_policy
    from fluidgate.sli_dsl.loader import load_policy

    path = ROOT / "examples/two_class.sli"
    return build_spec(solve_policy(load_policy(path).policy), path)


def fast_rate(spec: ControllerSpec, fidelity: str, duration: float, repeats: int
              ) -> dict[str, Any]:
    from fluidgate.simulator.names import Fidelity
    from fluidgate.simulator.run import RunOptions, simulate

    opts = RunOptions(fidelity=Fidelity(fidelity), gpus=N, duration=duration, warmup=50.0)
    simulate(spec, RunOptions(fidelity=Fidelity(fidelity), gpus=N, duration=5.0, warmup=1.0))
    rates, wall_rates, runs = [], [], []
    for seed in range(repeats):
        c0 = time.process_time()
        r = simulate(spec, RunOptions(**{**opts.__dict__, "seed": seed}))
        cpu = time.process_time() - c0  # includes setup and result building: conservative
        count = r.events if fidelity == "ctmc" else r.steps
        rates.append(count / cpu)
        wall_rates.append(count / r.wall_s)
        runs.append({"seed": seed, "count": count, "cpu_s": cpu, "loop_wall_s": r.wall_s,
                     "revenue_per_gpu": r.revenue_per_gpu})
    return {"median_per_s": statistics.median(rates),
            "median_per_wall_s": statistics.median(wall_rates), "runs": runs}


def simpy_rate(spec: ControllerSpec, horizon: float) -> dict[str, Any]:
    from bench.simpy_ctmc import SimpyCtmc
    from fluidgate.simulator import common as cm
    from fluidgate.simulator.config import build_instance, spec_at

    scaled = spec_at(spec, N)
    c = build_instance(scaled).cls
    model = SimpyCtmc(*(list(c[:, col]) for col in (
        cm.C_LAMBDA, cm.C_THETA, cm.C_MU_P, cm.C_MU_M, cm.C_MU_S, cm.C_W_DECODE,
        cm.C_TARGET_X, cm.C_TARGET_Q)), n=N, mixed=scaled.cluster.mixed_gpus,
        batch=scaled.cluster.max_batch, seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    events, _ = model.run(warmup=0.0, until=horizon)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"median_per_s": events / cpu, "median_per_wall_s": events / wall,
            "events": events, "cpu_s": cpu, "wall_s": wall, "simulated_s": horizon}


def memory() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD.format(root=str(ROOT))],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    before, after, events, wall = out.stdout.split()[-4:]
    return {"gpus": 5000, "rss_before_kib": int(before), "rss_peak_kib": int(after),
            "growth_mib": (int(after) - int(before)) / 1024, "events": int(events),
            "wall_s": float(wall)}


def _version(lib: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path,
                    help="results JSON (default bench/results/simulator-<date>-<host>.json)")
    ap.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    ap.add_argument("--quick", action="store_true", help="shorter runs, fewer repeats")
    args = ap.parse_args(argv)
    host = socket.gethostname().split(".")[0] or "dev"
    out: Path = args.out or ROOT / "bench/results" / f"simulator-{dt.date.today()}-{host}.json"
    refuse_existing(ap, out, args.overwrite)  # before minutes of measuring
    spec = reference_spec()
    repeats = 3 if args.quick else 5
    ctmc = fast_rate(spec, "ctmc", 200.0 if args.quick else 1000.0, repeats)
    iteration = fast_rate(spec, "iteration", 50.0 if args.quick else 300.0, repeats)
    simpy = simpy_rate(spec, 5.0 if args.quick else 30.0)
    mem = memory()
    result = {
        "schema": "fluidgate.bench-simulator/v1",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "instance": "examples/two_class.sli, gate-and-route, n = 500, one core",
        "ctmc": ctmc, "iteration": iteration, "simpy": simpy, "memory_n5000": mem,
        "ratio_ctmc_vs_simpy": ctmc["median_per_s"] / simpy["median_per_s"],
        "targets": TARGETS,
        "rates_are": "events (or GPU-iterations) per CPU-second of the measuring process; "
                     "per wall-second alongside",
        "load_average": os.getloadavg(),
        "versions": {lib: _version(lib) for lib in ("numba", "llvmlite", "numpy", "simpy")},
    }
    write_record(out, result, indent=2)
    print(f"ctmc       {ctmc['median_per_s']:>14,.0f} events/s   (target ≥ 1,000,000)")
    print(f"iteration  {iteration['median_per_s']:>14,.0f} GPU-iterations/s (target ≥ 1,000,000)")
    print(f"SimPy      {simpy['median_per_s']:>14,.0f} events/s   "
          f"(ctmc is {result['ratio_ctmc_vs_simpy']:,.0f}×; target ≥ 50×)")
    print(f"memory at n = 5,000: peak RSS {mem['rss_peak_kib'] / 1024:,.0f} MiB "
          f"(+{mem['growth_mib']:,.1f} MiB over a warmed-up process)")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
