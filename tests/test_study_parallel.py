"""The validation study gives the same runs in the same order in this process, on local
processes and on Ray (each run is fixed by its seed; only its wall time may differ)."""

from __future__ import annotations

import pytest

from fluidgate.parallel import LocalExecutor, RayExecutor
from fluidgate.simulator.names import PolicyName
from fluidgate.simulator.report import RunRecord
from fluidgate.simulator.study import StudyOptions, run_study, tasks
from tests.simulator_support import reference_spec

OPTS = StudyOptions(gpus=(5, 20), seeds=2, arrivals=3_000.0,
                    policies=(PolicyName.GATE_AND_ROUTE, PolicyName.FG_SP))


def _key(runs: list[RunRecord]) -> list[dict[str, object]]:
    return [r.model_copy(update={"wall_s": 0.0}).model_dump() for r in runs]


@pytest.fixture(scope="module")
def serial() -> list[RunRecord]:
    progress: list[tuple[int, int]] = []
    runs = run_study(reference_spec(), OPTS, LocalExecutor(1),
                     lambda done, total: progress.append((done, total)))
    assert progress == [(k, 8) for k in range(1, 9)]  # one step per finished run
    return runs


def test_runs_come_in_task_order(serial: list[RunRecord]) -> None:
    want = [(str(t.policy), t.n, t.seed) for t in tasks(OPTS)]
    assert [(r.policy, r.n, r.seed) for r in serial] == want
    assert len(want) == 8
    # different seeds are different runs (so equality below means something)
    assert serial[0].revenue_per_gpu != serial[1].revenue_per_gpu


def test_local_processes_match_serial(serial: list[RunRecord]) -> None:
    progress: list[int] = []
    pooled = run_study(reference_spec(), OPTS, LocalExecutor(2),
                       lambda done, _total: progress.append(done))
    assert progress == list(range(1, 9))
    assert _key(pooled) == _key(serial)


def test_ray_matches_serial(serial: list[RunRecord]) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install ray")
    try:
        on_ray = run_study(reference_spec(), OPTS, RayExecutor("local", 2))
    finally:
        ray.shutdown()
    assert _key(on_ray) == _key(serial)
