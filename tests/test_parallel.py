"""The executors: results in the items' order whatever finishes first, each finished task
reported as it finishes, and workers that share numba's on-disk cache compile once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fluidgate.parallel import LocalExecutor, RayExecutor
from tests.parallel_support import (
    compile_at,
    count_up,
    refuse_three,
    square,
    wait_for_sibling,
)


@pytest.mark.parametrize("workers", [1, 3])
def test_results_in_order_and_every_task_reported_once(workers: int) -> None:
    done: list[int] = []
    out = list(LocalExecutor(workers).map(square, range(7), done.append))
    assert out == [0, 1, 4, 9, 16, 25, 36]
    assert sorted(done) == list(range(7))


@pytest.mark.parametrize("workers", [1, 2])
def test_ticks_reach_the_caller_from_inside_tasks(workers: int) -> None:
    ticks: list[int] = []
    out = list(LocalExecutor(workers).map_ticking(count_up, [3, 0, 2], ticks.append))
    assert out == [3, 0, 2]
    assert sorted(ticks) == [0, 0, 0, 2, 2]  # task 0 ticked 3 times, task 2 twice


def test_a_task_that_finishes_early_is_reported_before_an_earlier_result(
        tmp_path: Path) -> None:
    """Item 1 finishes first: progress hears of it at once, the results still come 0, 1."""
    events: list[str] = []
    ex = LocalExecutor(2)
    for r in ex.map(wait_for_sibling, [(0, str(tmp_path)), (1, str(tmp_path))],
                    lambda i: events.append(f"done {i}")):
        events.append(f"result {r}")
    assert events == ["done 1", "done 0", "result 0", "result 1"]


def test_ray_keeps_order_reports_early_finishers_ticks_and_errors(tmp_path: Path) -> None:
    """The same contract on a local Ray (one start for all four checks: it takes seconds)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install ray")
    events: list[str] = []
    ticks: list[int] = []
    try:
        ex = RayExecutor("local", 2)
        for r in ex.map(wait_for_sibling, [(0, str(tmp_path)), (1, str(tmp_path))],
                        lambda i: events.append(f"done {i}")):
            events.append(f"result {r}")
        counted = list(ex.map_ticking(count_up, [3, 0, 2], ticks.append))
        with pytest.raises(ValueError, match="three is refused"):  # as raised, not wrapped
            list(ex.map(refuse_three, [1, 3]))
    finally:
        ray.shutdown()
    assert events == ["done 1", "done 0", "result 0", "result 1"]
    assert counted == [3, 0, 2]
    assert sorted(ticks) == [0, 0, 0, 2, 2]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_task_raises_its_own_error(workers: int) -> None:
    with pytest.raises(ValueError, match="three is refused"):
        list(LocalExecutor(workers).map(refuse_three, [1, 3, 5]))


def test_workers_on_a_cold_cache_compile_once(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes reach the same cached loop together on an empty cache: one
    compiles (a miss), the other waits for it and loads (a hit)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # read by the spawned workers
    start = time.time() + 3.0  # after both workers have started
    counts = list(LocalExecutor(2).map(compile_at, [start, start]))
    assert sorted(counts) == [(0, 1), (1, 0)]
    assert any(tmp_path.rglob("*.nbi"))  # the index numba saved


def test_a_cluster_lost_mid_run_is_said_in_words(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A Ray error that is not the task's own (a worker or node lost) becomes
    RayUnavailable, which the entry point prints as one error line with exit 2."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install ray")
    from fluidgate import cli
    from fluidgate.parallel import RayUnavailable

    class LostRay:
        exceptions = ray.exceptions

        @staticmethod
        def get(ref: object) -> object:
            raise ray.exceptions.WorkerCrashedError()

    ex = RayExecutor("10.0.0.9:6379", 2)
    ex._ray = LostRay()
    with pytest.raises(RayUnavailable, match=r"failed during the run.*WorkerCrashedError"):
        ex._get(object())

    def lost() -> None:
        ex._get(object())

    monkeypatch.setattr(cli, "_registered_names", lambda: frozenset({"check"}))
    monkeypatch.setattr(cli, "app", lost)
    monkeypatch.setattr("sys.argv", ["fluidgate", "check"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: the Ray cluster at '10.0.0.9:6379' failed during the run" in err
    assert "internal error" not in err and "Traceback" not in err
