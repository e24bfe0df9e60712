"""What drawing the `solve` report costs as policies grow: `python bench/render.py`.

The report draws the rows it shows (the busiest classes and the binding service levels), so
its cost must stay flat as K grows; before that change, 20,000 classes took longer to draw
than to solve. The solution is synthetic: a small generated policy is solved once and its
classes and service-level rows are repeated to K, since drawing depends only on the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python bench/render.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console

from bench.generate import generate
from fluidgate.solution import Solution


def synthetic(k: int, seed: int = 0) -> Solution:
    """A solved 40-class policy with SLOs, its classes and SLO rows repeated to `k` each."""
    import tempfile

    from fluidgate.pipeline import solve_policy
    from fluidgate.sli_dsl.loader import load_policy

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "base.sli"
        path.write_text(generate(40, seed, slos=True).text(), encoding="utf-8")
        sol = solve_policy(load_policy(path).policy, "highs")
    if not sol.optimal:
        raise SystemExit(f"the base policy did not solve: {sol.status.value}")
    classes = tuple(dataclasses.replace(sol.classes[i % len(sol.classes)], name=f"c{i:05d}")
                    for i in range(k))
    slos = tuple(sol.slos[i % len(sol.slos)] for i in range(k))
    return dataclasses.replace(sol, classes=classes, slos=slos)


def render_seconds(sol: Solution, width: int, all_classes: bool, runs: int) -> float:
    from fluidgate.report import render_solution

    times = []
    for _ in range(runs):
        console = Console(file=io.StringIO(), width=width, force_terminal=True)
        start = time.perf_counter()
        render_solution(sol, console, all_classes)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--classes", default="100,1000,20000",
                    help="comma-separated K values (default 100,1000,20000)")
    ap.add_argument("--runs", type=int, default=5, help="repetitions; the median is shown")
    ap.add_argument("--all-classes-up-to", type=int, default=1000,
                    help="also time --all-classes for K up to this (it draws every row)")
    args = ap.parse_args(argv)
    print("| K | width | summarised (default) | --all-classes |")
    print("|---|---|---|---|")
    for k in (int(v) for v in args.classes.split(",")):
        sol = synthetic(k)
        for width in (80, 120):
            summary = render_seconds(sol, width, False, args.runs)
            full = (f"{render_seconds(sol, width, True, args.runs) * 1e3:,.0f} ms"
                    if k <= args.all_classes_up_to else "—")
            print(f"| {k:,} | {width} | {summary * 1e3:,.0f} ms | {full} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
