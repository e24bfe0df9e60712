"""The validation study: one plan, every policy, several cluster sizes and seeds.

Runs are independent, so each (n, policy, seed) is one task for an executor
(`fluidgate.parallel`: this process, local processes or a Ray cluster), the same runner
sweeps and capacity searches use. Each task sends back a compact `RunRecord`; the records
come back in task order, and a run is fixed by its seed, so the report is the same whatever
ran it and whichever worker finished first. Workers on one machine share the compiled loops
through numba's on-disk cache (`simulator.jitcache`): one compiles, the others load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fluidgate.controllers.spec import ControllerSpec, dump_spec, parse_spec
from fluidgate.parallel import Executor, LocalExecutor, default_workers
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

    @classmethod
    def quick(cls) -> StudyOptions:
        return cls(gpus=QUICK_GPUS, seeds=2, arrivals=20_000.0)


@dataclass(frozen=True)
class Task:
    policy: PolicyName
    n: int
    seed: int


@dataclass(frozen=True)
class StudyRun:
    """What one worker needs for one run (picklable: the spec travels as its JSON text)."""

    spec_text: str
    task: Task
    fidelity: Fidelity
    arrivals: float


def tasks(opts: StudyOptions) -> list[Task]:
    return [Task(p, n, s) for n in opts.gpus for p in opts.policies for s in range(opts.seeds)]


def run_one(run: StudyRun) -> RunRecord:
    """One simulation (module level: it runs in worker processes and Ray tasks)."""
    from fluidgate.simulator.report import run_record
    from fluidgate.simulator.run import RunOptions, simulate

    task = run.task
    result = simulate(parse_spec(run.spec_text),
                      RunOptions(policy=task.policy, fidelity=run.fidelity, gpus=task.n,
                                 seed=task.seed, arrivals=run.arrivals, samples=20_000,
                                 snapshots=1))
    return run_record(result)


def run_study(spec: ControllerSpec, opts: StudyOptions, executor: Executor | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[RunRecord]:
    """Every (n, policy, seed) of the study, in `tasks` order, on `executor` (default: a
    process per local core); `progress(done, total)` each time a run finishes."""
    text = dump_spec(spec)
    todo = [StudyRun(text, t, opts.fidelity, opts.arrivals) for t in tasks(opts)]
    ex = executor or LocalExecutor(default_workers())
    done = 0

    def finished(_: int) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(todo))

    return list(ex.map(run_one, todo, finished))
