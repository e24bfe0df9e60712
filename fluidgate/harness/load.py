"""The load generator: open-loop arrivals at the policy's rates, one record per request.

Arrivals are Poisson per class at `rate × gpus` (or a replayed trace), drawn up front from a
seeded generator and sent at their model times whatever happens to earlier requests (open
loop: a slow system gets more, not less, traffic). Each request streams, carries its
class and a patience drawn from its class's mean (the gateway enforces it), and ends in
exactly one outcome: `served` (a complete stream), `abandoned` (429: patience ran out),
`rejected` (400 or 503: refused at the door), `failed` (anything else: an engine died, a
stream was cut, or it was still running when the drain limit passed). Every time recorded
is model seconds since the run started (wall seconds × `time_scale`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import aiohttp
import numpy as np

from fluidgate.controllers.spec import CLASS_HEADER, ControllerSpec
from fluidgate.harness.gateway import PATIENCE_HEADER
from fluidgate.harness.gateway_metrics import Outcome

MAX_REQUESTS = 1_000_000  # a run that would send more is refused, not started


@dataclass(frozen=True, slots=True)
class Arrival:
    time: float  # model seconds since the start
    cls: int
    prompt: int
    output: int
    patience: float | None  # model seconds; None: never leaves


@dataclass(slots=True)
class RequestRecord:
    cls: str
    send: float
    prompt: int
    output: int
    outcome: str = Outcome.FAILED.value
    status: int = 0
    ttft: float | None = None  # model s from send to the first token
    finish: float | None = None  # model s since the start, when the last token came
    tokens: int = 0
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (model s since send, n)

    def json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def poisson_arrivals(spec: ControllerSpec, duration: float, seed: int) -> list[Arrival]:
    """Each class's Poisson stream over [0, duration) at `rate × gpus`, merged by time."""
    rng = np.random.default_rng(seed)
    out: list[Arrival] = []
    for i, c in enumerate(spec.classes):
        lam = c.rate * spec.cluster.gpus
        if lam <= 0:
            continue
        expected = lam * duration
        if expected > MAX_REQUESTS:
            raise ValueError(f"about {expected:,.0f} requests: more than the {MAX_REQUESTS:,} "
                             "a run may send; shorten --duration")
        n = int(expected + 10 * np.sqrt(expected) + 10)
        times = np.cumsum(rng.exponential(1.0 / lam, n))
        times = times[times < duration]
        pats = (rng.exponential(c.patience, times.size) if c.patience is not None
                else [None] * times.size)
        out += [Arrival(float(t), i, round(c.prompt), round(c.output),
                        None if p is None else float(p)) for t, p in zip(times, pats, strict=True)]
    out.sort(key=lambda a: a.time)
    return out


class LoadRun:
    """Send `arrivals` to `target` and record each; `records` holds them in send order."""

    def __init__(self, spec: ControllerSpec, target: str, arrivals: list[Arrival],
                 time_scale: float = 1.0, drain_limit: float = 60.0) -> None:
        self.spec = spec
        self.url = target.rstrip("/") + "/v1/completions"
        self.arrivals = arrivals
        self.scale = time_scale
        self.drain_limit = drain_limit  # wall seconds to wait for in-flight requests at the end
        self.records: list[RequestRecord] = []
        self._origin = 0.0

    def _now(self) -> float:
        return (asyncio.get_running_loop().time() - self._origin) * self.scale

    async def run(self, progress: Callable[[LoadRun], None] | None = None) -> list[RequestRecord]:
        loop = asyncio.get_running_loop()
        self._origin = loop.time()
        tasks: list[asyncio.Task[None]] = []
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as session:
            for a in self.arrivals:
                delay = self._origin + a.time / self.scale - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                rec = RequestRecord(self.spec.classes[a.cls].name, a.time, a.prompt, a.output)
                self.records.append(rec)
                tasks.append(asyncio.create_task(self._send(session, a, rec)))
                if progress is not None and len(self.records) % 50 == 0:
                    progress(self)
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.drain_limit)
                for t in pending:  # still running at the drain limit: recorded as failed
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        if progress is not None:
            progress(self)
        return self.records

    async def _send(self, session: aiohttp.ClientSession, a: Arrival,
                    rec: RequestRecord) -> None:
        headers = {CLASS_HEADER: rec.cls}
        if a.patience is not None:
            headers[PATIENCE_HEADER] = repr(a.patience)
        body = {"prompt_tokens": a.prompt, "max_tokens": a.output, "stream": True}
        try:
            async with session.post(self.url, json=body, headers=headers) as r:
                rec.status = r.status
                if r.status == 429:
                    rec.outcome = Outcome.ABANDONED.value
                elif r.status in (400, 503):
                    rec.outcome = Outcome.REJECTED.value
                elif r.status == 200:
                    rec.outcome = (await self._read_stream(r, rec)).value
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass  # stays failed

    async def _read_stream(self, r: aiohttp.ClientResponse, rec: RequestRecord) -> Outcome:
        """Served for a complete stream; abandoned for an in-stream 'abandoned' error (the
        first token was already sent); failed for anything else."""
        async for raw in r.content:
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            if line == b"data: [DONE]":
                rec.finish = rec.send + rec.chunks[-1][0] if rec.chunks else None
                return Outcome.SERVED if rec.tokens == rec.output else Outcome.FAILED
            event = json.loads(line[6:])
            error = event.get("error")
            if isinstance(error, dict):
                return Outcome.ABANDONED if error.get("type") == "abandoned" else Outcome.FAILED
            n = event.get("fluidgate", {}).get("tokens", 0)
            if n:
                t = self._now() - rec.send
                if rec.ttft is None:
                    rec.ttft = t
                rec.chunks.append((t, int(n)))
                rec.tokens += int(n)
        return Outcome.FAILED


def jsonl(records: list[RequestRecord]) -> str:
    return "".join(r.json() + "\n" for r in records)
