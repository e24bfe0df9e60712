"""The load generator: open-loop arrivals at the policy's rates, one record per request.

Arrivals are Poisson per class at `rate × gpus`, drawn up front from a seeded generator, or
a replayed trace (`trace_arrivals`); either way they are sent at their model times whatever
happens to earlier requests (open loop: a slow system gets more, not less, traffic). Each
request streams, carries its class and a patience drawn from its class's mean (the gateway
enforces it), and ends in
exactly one outcome: `served` (a complete stream), `abandoned` (429: patience ran out),
`rejected` (400 or 503: refused at the door), `failed` (anything else: an engine died, a
stream was cut, or it was still running when the drain limit passed). Every time recorded
is model seconds since the run started (wall seconds × `time_scale`).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np

from fluidgate.controllers.classify import Classifier
from fluidgate.controllers.spec import CLASS_HEADER, ControllerSpec
from fluidgate.harness.bodies import chunk_tokens
from fluidgate.harness.gateway import PATIENCE_HEADER
from fluidgate.harness.gateway_metrics import Outcome
from fluidgate.harness.protocol import MAX_OUTPUT_TOKENS, MAX_PROMPT_TOKENS
from fluidgate.planning.traces import Trace, TraceFormat

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


def _line(trace: Trace, index: int) -> str:
    """`file:line` of the trace's request `index` (the readers keep the file's order)."""
    return f"{trace.file}:{index + (1 if trace.format is TraceFormat.MOONCAKE else 2)}"


def trace_arrivals(spec: ControllerSpec, trace: Trace, duration: float, seed: int,
                   speed: float = 1.0, offset: float = 0.0, limit: int | None = None
                   ) -> list[Arrival]:
    """The trace's requests as arrivals: the one at trace second `t` is sent at model second
    `(t − offset) / speed`, those in [0, duration) and at most `limit` of them, with the
    trace's token counts (a 0 is sent as 1 token: the API has no empty prompt or answer).

    Each request gets the class the gateway's classification gives a request of its length
    (`Classifier.classify_known`: length rules, else the nearest class in log(prompt,
    output)); its patience is the trace's, else a draw from its class's mean."""
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"--speed must be a positive number, not {speed}")
    if not math.isfinite(offset):
        raise ValueError(f"--offset must be a number of seconds, not {offset}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, not {limit}")
    send = (trace.arrival - offset) / speed
    order = np.argsort(send, kind="stable")
    keep = order[(send[order] >= 0) & (send[order] < duration)][:limit]
    if keep.size == 0:
        raise ValueError(
            f"no request of trace '{trace.file}' falls in the window: its {trace.requests:,} "
            f"requests span {trace.span:g} trace seconds, and the window is trace seconds "
            f"[{offset:g}, {offset + duration * speed:g}) (--offset, --duration × --speed)")
    if keep.size > MAX_REQUESTS:
        raise ValueError(f"{keep.size:,} requests: more than the {MAX_REQUESTS:,} a run may "
                         "send; shorten --duration or give --limit")
    prompt = np.maximum(np.rint(trace.prompt[keep]), 1).astype(np.int64)
    output = np.maximum(np.rint(trace.output[keep]), 1).astype(np.int64)
    for what, values, most in (("prompt", prompt, MAX_PROMPT_TOKENS),
                               ("output", output, MAX_OUTPUT_TOKENS)):
        over = np.flatnonzero(values > most)
        if over.size:
            raise ValueError(f"{_line(trace, int(keep[over[0]]))}: {what} of "
                             f"{values[over[0]]:,} tokens; the harness sends at most {most:,}")
    labels = Classifier(spec).classify_known(prompt, output)
    pats: list[float | None]
    if trace.patience is not None:
        given = trace.patience[keep]
        bad = np.flatnonzero(~(given > 0))
        if bad.size:
            raise ValueError(f"{_line(trace, int(keep[bad[0]]))}: patience {given[bad[0]]:g} "
                             "s; a patience must be positive")
        pats = [float(p) for p in given]
    else:
        rng = np.random.default_rng(seed)
        means = [c.patience for c in spec.classes]
        pats = [None if means[c] is None else float(rng.exponential(means[c]))
                for c in labels]
    return [Arrival(float(send[i]), int(c), int(p), int(o), pat) for i, c, p, o, pat
            in zip(keep, labels, prompt, output, pats, strict=True)]


class LoadRun:
    """Send `arrivals` to `target` and record each; `records` holds them in send order."""

    def __init__(self, spec: ControllerSpec, target: str, arrivals: list[Arrival],
                 time_scale: float = 1.0, drain_limit: float = 60.0,
                 body: Callable[[int, int], dict[str, Any]] | None = None) -> None:
        self.spec = spec
        self.url = target.rstrip("/") + "/v1/completions"
        self.arrivals = arrivals
        self.scale = time_scale
        self.drain_limit = drain_limit  # wall seconds to wait for in-flight requests at the end
        self.records: list[RequestRecord] = []
        self._origin = 0.0
        self._body = body  # (prompt, output) → the request body; None: the emulator's

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
        body = (self._body(a.prompt, a.output) if self._body is not None else
                {"prompt_tokens": a.prompt, "max_tokens": a.output, "stream": True})
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
        usage = 0
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
            n, usage = chunk_tokens(event, usage)
            if n:
                t = self._now() - rec.send
                if rec.ttft is None:
                    rec.ttft = t
                rec.chunks.append((t, int(n)))
                rec.tokens += int(n)
        return Outcome.FAILED


def jsonl(records: list[RequestRecord]) -> str:
    return "".join(r.json() + "\n" for r in records)
