"""Run independent tasks in order: in this process, on local processes, or on Ray.

One small interface, `Executor.map(fn, items)`, yields `fn(item)` for each item *in the
items' order*, whichever worker finishes first, so a report never depends on scheduling.
`fn` must be a module-level function and items picklable (they travel to other processes).
Scheduling is the pool's or Ray's own; nothing here decides where a task runs.
Sweeps and capacity searches use it; so can the simulator's validation study.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RAY_HINT = ("Ray is not installed; install the extra (pip install -e '.[ray]' in the "
            "fluidgate checkout), or leave out --ray to run on local processes")


class RayUnavailable(Exception):
    """Ray was asked for but cannot be used; the message says what to do."""


class Executor(Protocol):
    @property
    def workers(self) -> int: ...

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class LocalExecutor:
    """A process pool of `workers` (1: in this process, no pool at all)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        todo = list(items)
        if self.workers == 1 or len(todo) <= 1:
            yield from (fn(item) for item in todo)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked child inherits HiGHS's and the caller's threads
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(todo)),
                                 mp_context=ctx) as pool:
            yield from pool.map(fn, todo)


class RayExecutor:
    """Tasks on a Ray cluster: `address` is `auto` (the cluster this machine belongs to),
    `ray://host:10001` or `host:6379`, or `local` (start a one-machine Ray here: tests)."""

    def __init__(self, address: str, workers: int | None = None) -> None:
        self.address = address
        self._workers = workers or 0  # 0: the cluster's CPU count, asked when first needed
        self._ray: Any = None

    @property
    def workers(self) -> int:
        """How many tasks to cut the work into (connects to the cluster to ask, once)."""
        if not self._workers:
            self._init()
        return self._workers

    def _init(self) -> Any:
        if self._ray is not None:
            return self._ray
        try:
            import ray
        except ImportError:
            raise RayUnavailable(RAY_HINT) from None
        if not ray.is_initialized():
            try:
                if self.address == "local":
                    ray.init(num_cpus=max(1, self._workers or 1), include_dashboard=False,
                             log_to_driver=False)
                else:
                    ray.init(address=self.address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"cannot reach the Ray cluster at '{self.address}': "
                                     f"{exc}") from None
        if not self._workers:
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            self._workers = max(1, int(resources.get("CPU", 1)))
        self._ray = ray
        return ray

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        ray = self._init()
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(item) for item in items]
        for ref in refs:  # in submission order: later ones keep running meanwhile
            yield ray.get(ref)


def make_executor(ray_address: str | None, workers: int | None) -> Executor:
    """Local processes unless `ray_address` is given."""
    if ray_address is not None:
        return RayExecutor(ray_address, workers)
    return LocalExecutor(workers if workers is not None else default_workers())
