"""`fluidgate harness`: engines and a gateway as child processes, the load from this one.

Each child runs `python -m fluidgate engine|gateway ... --port 0` in a session (process
group) of its own and announces its port on its first output line, so ports are always
free ones the kernel picked on 127.0.0.1. Whatever happens — the load finishes, a child
fails to start, Ctrl-C — the `finally` sends each group SIGTERM, waits, then SIGKILL: no
process outlives the harness (short of the harness itself being SIGKILLed). Children's
stderr goes to `DIR/logs/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fluidgate
from fluidgate.controllers.spec import ControllerSpec
from fluidgate.harness.load import LoadRun, RequestRecord, poisson_arrivals
from fluidgate.harness.serve import LISTENING

START_LIMIT_S = 120.0  # wall seconds a child may take to announce its port
STOP_GRACE_S = 5.0


class HarnessError(Exception):
    """The harness could not run; `str()` says why (a child that did not start, …)."""


@dataclass(frozen=True)
class HarnessOptions:
    spec_file: Path  # the spec at this N, already written
    mixed: int
    solo: int
    duration: float  # model seconds of arrivals
    time_scale: float
    seed: int
    stream_interval: int
    lookahead: int
    logs: Path


class Children:
    """The child processes of one run; `stop()` ends every one of them."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, args: list[str], log: Path) -> str:
        root = str(Path(fluidgate.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
        with open(log, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fluidgate", *args, stdout=asyncio.subprocess.PIPE,
                stderr=err, stdin=asyncio.subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_LIMIT_S)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith(LISTENING + " "):
            raise HarnessError(f"'fluidgate {args[0]}' did not start (see {log})")
        return text.split(" ", 1)[1]

    async def stop(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                await p.wait()


async def run_harness(spec: ControllerSpec, opts: HarnessOptions,
                      progress: Callable[[LoadRun], None] | None = None
                      ) -> list[RequestRecord]:
    """Start the engines and the gateway, send the load, stop everything; the records."""
    children = Children()
    common = ["--spec", str(opts.spec_file), "--port", "0", "--time-scale",
              repr(opts.time_scale), "--stream-interval", str(opts.stream_interval),
              "--prefill-lookahead", str(opts.lookahead)]
    try:
        roles = ["mixed"] * opts.mixed + ["solo"] * opts.solo
        urls = await asyncio.gather(*(
            children.start(["engine", "--role", role, *common],
                           opts.logs / f"engine-{i}-{role}.log")
            for i, role in enumerate(roles)))
        gw_args = ["gateway", str(opts.spec_file), "--port", "0", "--time-scale",
                   repr(opts.time_scale), "--seed", str(opts.seed)]
        for role, url in zip(roles, urls, strict=True):
            gw_args += [f"--{role}", url]
        gateway = await children.start(gw_args, opts.logs / "gateway.log")
        arrivals = poisson_arrivals(spec, opts.duration, opts.seed)
        drain = max(60.0, 20 * max((c.patience or 0.0) for c in spec.classes)
                    / opts.time_scale)
        return await LoadRun(spec, gateway, arrivals, opts.time_scale, drain).run(progress)
    finally:
        await asyncio.shield(children.stop())
