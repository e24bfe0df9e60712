"""The `--ray` and `--workers` options, shared by `sweep`, `capacity` and `validate`.

One definition, so the three commands spell, check and explain them alike. Importing this
module stays cheap (the main CLI imports it to build its help): Ray loads only when asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from fluidgate.parallel import Executor

RayOpt = Annotated[str | None, typer.Option(
    "--ray", metavar="auto|ADDRESS", show_default=False,
    help="Run the points on a Ray cluster (auto: the one this machine belongs to; or "
         "ray://HOST:10001). Needs the [ray] extra. Default: this machine (see -j).")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-j", min=1, max=4096, show_default=False, metavar="N",
    help="Parallel workers: local processes, or Ray tasks with --ray (default: 1 for a "
         "sweep, which then re-solves warm in this process; up to 4 local cores for a "
         "capacity search; every local core for validate; with --ray, the cluster's "
         "CPUs).")]


def connect(ray: str | None, workers: int | None, default: int) -> Executor:
    """The executor the options ask for; with --ray, connected now, so that a bad address
    fails before any work (raises `parallel.RayUnavailable` with the words to show)."""
    from fluidgate.parallel import make_executor

    ex = make_executor(ray, workers if workers is not None or ray else default)
    ex.workers  # noqa: B018  (RayExecutor connects to the cluster to answer)
    return ex
