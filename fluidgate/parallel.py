"""Run independent tasks in order: in this process, on local processes, or on Ray.

One small interface, `Executor.map(fn, items, on_done)`, yields `fn(item)` for each item
*in the items' order*, whichever worker finishes first, so a report never depends on
scheduling; `on_done(i)` is called as soon as item `i`'s task finishes, in whatever order
they finish, so a progress bar moves with the work rather than with the slowest early task.
`map_ticking(fn, items, on_tick)` is the same for tasks that hold several units of work (a
sweep's chunk of points): `fn(item, tick)` calls `tick()` after each unit and `on_tick(i)`
hears of it while the task still runs, through the pool's or Ray's own queue.
`fn` must be a module-level function and items picklable (they travel to other processes).
Scheduling is the pool's or Ray's own; nothing here decides where a task runs.
Sweeps, capacity searches and the simulator's validation study use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")
H = TypeVar("H", bound=Hashable)

Done = Callable[[int], None]
Tick = Callable[[], None]

RAY_HINT = ("Ray is not installed; install the extra (pip install -e '.[ray]' in the "
            "fluidgate checkout), or leave out --ray to run on local processes")


class RayUnavailable(Exception):
    """Ray was asked for but cannot be used; the message says what to do."""


class Executor(Protocol):
    @property
    def workers(self) -> int: ...

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_done: Done | None = None) -> Iterator[R]: ...

    def map_ticking(self, fn: Callable[[T, Tick], R], items: Iterable[T],
                    on_tick: Done) -> Iterator[R]: ...


@dataclass(frozen=True)
class QueueTick:
    """A task's `tick()`: puts the task's index on a queue the caller drains (picklable, so
    it travels with the task)."""

    queue: Any  # a multiprocessing manager's Queue proxy, or a ray.util.queue.Queue
    index: int

    def __call__(self) -> None:
        self.queue.put(self.index)


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def in_order(handles: Sequence[H], wait: Callable[[set[H]], Iterable[H]],
             result: Callable[[H], R], on_done: Done | None) -> Iterator[R]:
    """Results of submitted tasks in submission order; `on_done(i)` as each one finishes.

    `wait(pending)` returns those of `pending` that have finished (none, after a timeout).
    Waiting happens in the caller's thread, so `on_done` may touch a progress bar.
    """
    index = {h: i for i, h in enumerate(handles)}
    pending = set(handles)
    for handle in handles:
        while handle in pending:
            for h in wait(pending):
                if h in pending:
                    pending.discard(h)
                    if on_done is not None:
                        on_done(index[h])
        yield result(handle)


class LocalExecutor:
    """A process pool of `workers` (1: in this process, no pool at all)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_done: Done | None = None) -> Iterator[R]:
        todo = list(items)
        if self.workers == 1 or len(todo) <= 1:
            for i, item in enumerate(todo):
                out = fn(item)
                if on_done is not None:
                    on_done(i)
                yield out
            return
        from concurrent.futures import FIRST_COMPLETED, Future, wait

        def some_done(pending: set[Future[R]]) -> Iterable[Future[R]]:
            return wait(pending, return_when=FIRST_COMPLETED).done

        with self._pool(len(todo)) as pool:
            futures = [pool.submit(fn, item) for item in todo]
            yield from in_order(futures, some_done, lambda f: f.result(), on_done)

    def map_ticking(self, fn: Callable[[T, Tick], R], items: Iterable[T],
                    on_tick: Done) -> Iterator[R]:
        todo = list(items)
        if self.workers == 1 or len(todo) <= 1:
            for i, item in enumerate(todo):
                yield fn(item, partial(on_tick, i))
            return
        import multiprocessing
        import queue
        from concurrent.futures import FIRST_COMPLETED, Future, wait

        with multiprocessing.get_context("spawn").Manager() as manager, \
                self._pool(len(todo)) as pool:  # the manager's process ends with the block
            ticks = manager.Queue()

            def some_done(pending: set[Future[R]]) -> Iterable[Future[R]]:
                done = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED).done
                while True:  # after the wait: a finished task's ticks are all queued
                    try:
                        on_tick(ticks.get_nowait())
                    except queue.Empty:
                        return done

            futures = [pool.submit(fn, item, QueueTick(ticks, i))
                       for i, item in enumerate(todo)]
            yield from in_order(futures, some_done, lambda f: f.result(), None)

    @contextmanager
    def _pool(self, tasks: int) -> Iterator[ProcessPoolExecutor]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked child inherits HiGHS's and the caller's threads
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.workers, tasks), mp_context=ctx)
        try:
            yield pool
        finally:  # also when the caller stops early: queued tasks are dropped, not run
            pool.shutdown(wait=True, cancel_futures=True)


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

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_done: Done | None = None) -> Iterator[R]:
        ray = self._init()
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(item) for item in items]  # all at once: Ray places them
        yield from self._in_order(refs, on_done, lambda: None)

    def map_ticking(self, fn: Callable[[T, Tick], R], items: Iterable[T],
                    on_tick: Done) -> Iterator[R]:
        ray = self._init()
        from ray.util.queue import Empty, Queue

        ticks = Queue(actor_options={"num_cpus": 0})  # an actor: any node's tasks reach it
        remote = ray.remote(num_cpus=1)(fn)

        def drain() -> None:
            while True:
                try:
                    on_tick(ticks.get_nowait())
                except Empty:
                    return

        try:
            refs = [remote.remote(item, QueueTick(ticks, i)) for i, item in enumerate(items)]
            yield from self._in_order(refs, None, drain)
        finally:
            ticks.shutdown()

    def _get(self, ref: Any) -> Any:
        """The task's result, or the exception it raised as such (as a local pool does), not
        wrapped in Ray's error with the remote traceback in its message."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, Exception):
                raise exc.cause from exc
            raise
        except ray.exceptions.RayError as exc:  # a worker, node or the cluster lost mid-run
            raise RayUnavailable(f"the Ray cluster at '{self.address}' failed during the run "
                                 f"({type(exc).__name__}: {exc}); nothing was written") from None

    def _in_order(self, refs: list[Any], on_done: Done | None,
                  drain: Callable[[], None]) -> Iterator[Any]:
        ray = self._ray

        def some_done(pending: set[Any]) -> list[Any]:
            ready, rest = ray.wait(list(pending), num_returns=1, timeout=0.1)
            if rest:  # and whatever else has finished meanwhile, without waiting
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            drain()
            return list(ready)

        # When the caller stops early or a task fails, the rest are dropped, not cancelled:
        # Ray 2.60's driver aborts the whole process (a failed internal check, "Tried to
        # complete task that was not pending") when a cancelled task completes meanwhile,
        # which took the test run down with exit 1. Tasks already placed run to their end.
        yield from in_order(refs, some_done, self._get, on_done)


def make_executor(ray_address: str | None, workers: int | None) -> Executor:
    """Local processes unless `ray_address` is given."""
    if ray_address is not None:
        return RayExecutor(ray_address, workers)
    return LocalExecutor(workers if workers is not None else default_workers())
