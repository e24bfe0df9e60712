"""Sweep speed: `python bench/sweep.py` (one core; results recorded in docs/performance.md).

For the generated 100-class policy with one SLO per class (`bench/generate.py`, seed 0),
one-parameter sweeps of a cluster-wide tpot bound and of every class's rate scale, run
in this process (one core): points per second for the whole sweep (LP build included, as a
user sees it) and for the re-solves alone, next to fresh solves of the same points
(`solve_policy` per point). Every point is verified; the script fails if any warm point
differs from its fresh solve by more than 1e-9 relative.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python bench/sweep.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import generate
from fluidgate.pipeline import solve_policy
from fluidgate.planning.sweep import point_policy, run_sweep
from fluidgate.planning.vary import parse_vary
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.solvers.highs import stdout_silenced

SPECS = ("tpot 25ms..35ms step 0.1ms", "rate x0.8..x1.2 step x0.005")
FRESH_SAMPLE = 10  # fresh solves timed per sweep (they take ~0.15 s each at 100 classes)


def main() -> None:
    policy = parse_policy(generate(100, 0, True).text(), "generated.sli").policy
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    for spec in SPECS:
        v = parse_vary(spec, policy)
        with stdout_silenced():
            t0 = time.perf_counter()
            result = run_sweep(policy, [v])
            total = time.perf_counter() - t0
            t0 = time.perf_counter()  # the build and first solve alone
            run_sweep(policy, [dataclasses.replace(v, values=v.values[:1])])
            first = time.perf_counter() - t0
        pts = len(result.points)
        first_warm = next(i for i, p in enumerate(result.points) if p.path == "warm")
        warm = sum(p.path == "warm" for p in result.points)
        step = max(1, pts // FRESH_SAMPLE)
        sample = result.points[::step][:FRESH_SAMPLE]
        t1 = time.perf_counter()
        with stdout_silenced():
            fresh = [solve_policy(point_policy(policy, [v], [p.values[v.label]]))
                     for p in sample]
        fresh_rate = len(sample) / (time.perf_counter() - t1)
        for p, f in zip(sample, fresh, strict=True):
            if p.optimal != f.optimal or (f.optimal and abs(p.r_star - f.objective)
                                          > 1e-9 * abs(f.objective)):
                raise SystemExit(f"{spec}: point {p.index} differs from a fresh solve")
        optimal = sum(p.optimal for p in result.points)
        print(f"{spec}: {pts} points ({optimal} optimal, {warm} warm, first warm at "
              f"{first_warm}) in {total:.2f} s = {pts / total:.1f} points/s with the build "
              f"({first:.2f} s for the build and first point), "
              f"{(pts - 1) / (total - first):.1f} points/s re-solving; "
              f"fresh solves {fresh_rate:.1f} points/s")


if __name__ == "__main__":
    main()
