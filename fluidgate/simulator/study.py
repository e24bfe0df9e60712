"""The validation study: one plan, every policy, several cluster sizes and seeds.

Runs are independent, so they go to a process pool (one worker per local core); each worker
compiles the loops once (numba caches them on disk, so later workers load them) and sends
back a compact `RunRecord`. Results are collected in submission order, so the report does
not depend on which worker finished first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from fluidgate.controllers.spec import ControllerSpec, dump_spec, parse_spec
from fluidgate.simulator.config import BASELINES
from fluidgate.simulator.names import Fidelity, PolicyName
from fluidgate.simulator.report import RunRecord

FULL_GPUS = (5, 20, 50, 200, 500)
QUICK_GPUS = (5, 20, 50)


@dataclass(frozen=True)
class StudyOptions:
    gpus: tuple[int, ...] = FULL_GPUS
    seeds: int = 5
    policies: tuple[PolicyName, ...] = (PolicyName.GATE_AND_ROUTE, *BASELINES)
    fidelity: Fidelity = Fidelity.CTMC
    arrivals: float = 400_000.0  # per run, in the measured window
    workers: int | None = None  # default: every local core

    @classmethod
    def quick(cls) -> StudyOptions:
        return cls(gpus=QUICK_GPUS, seeds=2, arrivals=20_000.0)


@dataclass(frozen=True)
class Task:
    policy: PolicyName
    n: int
    seed: int


def tasks(opts: StudyOptions) -> list[Task]:
    return [Task(p, n, s) for n in opts.gpus for p in opts.policies for s in range(opts.seeds)]


def _run_one(spec_text: str, task: Task, fidelity: Fidelity, arrivals: float) -> RunRecord:
    from fluidgate.simulator.report import run_record
    from fluidgate.simulator.run import RunOptions, simulate

    spec = parse_spec(spec_text)
    result = simulate(spec, RunOptions(policy=task.policy, fidelity=fidelity, gpus=task.n,
                                       seed=task.seed, arrivals=arrivals, samples=20_000,
                                       snapshots=1))
    return run_record(result)


def run_study(spec: ControllerSpec, opts: StudyOptions,
              progress: Callable[[int, int], None] | None = None) -> list[RunRecord]:
    """Every (n, policy, seed) of the study; `progress(done, total)` after each run."""
    todo = tasks(opts)
    text = dump_spec(spec)
    workers = opts.workers or os.cpu_count() or 1
    results: list[RunRecord | None] = [None] * len(todo)
    if workers == 1:
        for i, t in enumerate(todo):
            results[i] = _run_one(text, t, opts.fidelity, opts.arrivals)
            if progress:
                progress(i + 1, len(todo))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            index = {pool.submit(_run_one, text, t, opts.fidelity, opts.arrivals): i
                     for i, t in enumerate(todo)}
            for done, future in enumerate(as_completed(index), start=1):
                results[index[future]] = future.result()
                if progress:
                    progress(done, len(todo))
    return [r for r in results if r is not None]
