"""`fluidgate harness`: engines and a gateway as child processes, the load from this one.

Each fluidgate child runs `python -m fluidgate engine|gateway ... --port 0` and announces
its port on its first output line, so its port is a free one the kernel picked on
127.0.0.1. A real engine (`vllm serve`, SGLang) is given a free port picked just before
(`launch.py`) and is ready when its `/health` answers 200; one that exits or stays silent
past its start limit stops the run with an error naming it, its command line and the end of
its log. Every child runs in a session (process group) of its own, so the engines' own
worker processes belong to it too. Whatever happens — the load finishes, a child fails to
start, Ctrl-C — the `finally` sends each group SIGTERM, waits, then SIGKILL: no process
outlives the harness (short of the harness itself being SIGKILLed). Children's output goes
to `DIR/logs/`.
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
from typing import IO, Any

import aiohttp

import fluidgate
from fluidgate.controllers.spec import ControllerSpec
from fluidgate.harness.handoff import Handoff
from fluidgate.harness.launch import EngineProcess, start_waves
from fluidgate.harness.load import Arrival, LoadRun, RequestRecord, poisson_arrivals
from fluidgate.harness.serve import LISTENING

START_LIMIT_S = 120.0  # wall seconds a child may take to announce its port
STOP_GRACE_S = 5.0
REAL_STOP_GRACE_S = 30.0  # a real engine shuts its workers down and frees GPU memory
HEALTH_POLL_S = 0.5
LOG_TAIL_LINES = 15


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
    lead_ms: float  # wall ms of prefill work at which engines announce a prefill's end
    logs: Path
    engines: tuple[EngineProcess, ...] = ()  # real engines to start; none: emulated ones
    engines_per_gpu: int = 1
    start_timeout: float = START_LIMIT_S  # wall seconds a real engine may take to be ready
    body: Callable[[int, int], dict[str, Any]] | None = None  # requests for real engines
    protocol: Handoff = Handoff.VLLM  # the gateway's handoff from prefill to decode
    arrivals: tuple[Arrival, ...] | None = None  # a replayed trace's; None: Poisson
    decoder: str | None = None  # emulated engines' `--model NAME`: real forward passes


class Children:
    """The child processes of one run; `stop()` ends every one of them."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self._grace: dict[int, float] = {}

    async def _spawn(self, argv: list[str], env: dict[str, str], stdout: int | IO[bytes],
                     log: IO[bytes], grace: float) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=stdout, stderr=log, stdin=asyncio.subprocess.DEVNULL, env=env,
            start_new_session=True)
        self.procs.append(proc)
        self._grace[proc.pid] = grace
        return proc

    async def start(self, args: list[str], log: Path) -> str:
        root = str(Path(fluidgate.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
        with open(log, "wb") as err:
            proc = await self._spawn([sys.executable, "-m", "fluidgate", *args], env,
                                     asyncio.subprocess.PIPE, err, STOP_GRACE_S)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_LIMIT_S)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith(LISTENING + " "):
            raise HarnessError(f"'fluidgate {args[0]}' did not start (see {log})")
        return text.split(" ", 1)[1]

    async def start_engine(self, engine: EngineProcess, log: Path, timeout: float) -> str:
        """Start a real engine; its URL once its `/health` answers 200 (`HarnessError` if it
        exits first or `timeout` wall seconds pass)."""
        with open(log, "wb") as out:
            try:
                proc = await self._spawn(list(engine.argv), dict(os.environ, **dict(engine.env)),
                                         out, out, REAL_STOP_GRACE_S)
            except OSError as exc:
                raise HarnessError(_engine_failed(engine, log, f"could not start ({exc})")
                                   ) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if proc.returncode is not None:
                    raise HarnessError(_engine_failed(
                        engine, log, f"exited with status {proc.returncode} before it "
                        "answered /health"))
                if await _healthy(session, engine.url):
                    return engine.url
                if loop.time() > deadline:
                    raise HarnessError(_engine_failed(
                        engine, log, f"did not answer {engine.url}/health within "
                        f"{timeout:g} s (raise --start-timeout if it is still loading)"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), HEALTH_POLL_S)

    async def stop(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        await asyncio.gather(*(self._reap(p) for p in self.procs))

    async def _reap(self, p: asyncio.subprocess.Process) -> None:
        """Wait out the child's grace, then SIGKILL whatever is left of its group: a worker
        that outlived its leader included (the group's id is not reused while it has
        members, so this reaches no stranger)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(p.wait(), self._grace.get(p.pid, STOP_GRACE_S))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        await p.wait()


async def run_harness(spec: ControllerSpec, opts: HarnessOptions,
                      progress: Callable[[LoadRun], None] | None = None
                      ) -> list[RequestRecord]:
    """Start the engines and the gateway, send the load, stop everything; the records."""
    children = Children()
    common = ["--spec", str(opts.spec_file), "--port", "0", "--time-scale",
              repr(opts.time_scale), "--stream-interval", str(opts.stream_interval),
              "--prefill-lead", repr(opts.lead_ms)]
    if opts.decoder is not None:
        common += ["--model", opts.decoder]
    try:
        roles = ["mixed"] * opts.mixed + ["solo"] * opts.solo
        if opts.engines:
            urls = await _start_real(children, opts)
        else:
            urls = await asyncio.gather(*(
                children.start(["engine", "--role", role, *common],
                               opts.logs / f"engine-{i}-{role}.log")
                for i, role in enumerate(roles)))
        gw_args = ["gateway", str(opts.spec_file), "--port", "0", "--time-scale",
                   repr(opts.time_scale), "--seed", str(opts.seed)]
        if not opts.engines and opts.lead_ms > 0:  # emulated engines announce prefill ends
            gw_args.append("--streamed-prefill")
        gw_args += ["--protocol", opts.protocol.value]
        for e in opts.engines:
            if e.role == "mixed" and e.bootstrap_port is not None:
                gw_args += ["--bootstrap-port", str(e.bootstrap_port)]
        for role, url in zip(roles, urls, strict=True):
            gw_args += [f"--{role}", url]
        gateway = await children.start(gw_args, opts.logs / "gateway.log")
        arrivals = (list(opts.arrivals) if opts.arrivals is not None
                    else poisson_arrivals(spec, opts.duration, opts.seed))
        drain = max(60.0, 20 * max((c.patience or 0.0) for c in spec.classes)
                    / opts.time_scale)
        return await LoadRun(spec, gateway, arrivals, opts.time_scale, drain,
                             opts.body).run(progress)
    finally:
        await asyncio.shield(children.stop())


async def _start_real(children: Children, opts: HarnessOptions) -> list[str]:
    """Start the real engines wave by wave (engines sharing a GPU one after another); stop at
    the first that fails, cancelling the others' waits."""
    for wave in start_waves(list(opts.engines), opts.engines_per_gpu):
        try:
            async with asyncio.TaskGroup() as group:
                for e in wave:
                    group.create_task(children.start_engine(
                        e, opts.logs / f"engine-{e.index}-{e.role}.log", opts.start_timeout))
        except BaseExceptionGroup as failed:
            first = next((x for x in failed.exceptions if isinstance(x, HarnessError)), None)
            if first is None:
                raise
            raise first from None
    return [e.url for e in opts.engines]


async def _healthy(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=2)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


def _engine_failed(engine: EngineProcess, log: Path, what: str) -> str:
    """The error for an engine that did not come up: which, its command line, its log's end."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            tail = f.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        tail = []
    lines = [f"{engine.name} at {engine.url} {what}", f"  command: {engine.command_line()}",
             f"  log: {log}" + (", last lines:" if tail else " (empty)")]
    return "\n".join(lines + [f"    {t}" for t in tail])
