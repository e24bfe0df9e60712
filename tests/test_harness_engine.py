"""The emulated engine: its model clock against hand-computed iteration sums, continuous
batching limits, the two-step protocol, and malformed bodies.

Every engine here is started by the test on 127.0.0.1 (a free port) and stopped by it; each
test sends a bounded number of requests under a time limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from fluidgate.harness.core import EngineCore, Stream
from fluidgate.harness.engine import EngineServer
from fluidgate.harness.serve import start_site
from fluidgate.harness.timing import EngineTiming
from fluidgate.model import CurveForm, IterationCurve

# The reference instance's inline times (examples/two_class.sli): τ_mix(C) = 17.4 ms +
# 0.062 ms/token · C, τ_solo = 22 ms, B = 16, C = 256.
TAU_MIX_256 = 0.0174 + 0.000062 * 256  # 0.033272 s
TAU_SOLO = 0.022
TIMING = EngineTiming(16, 256, IterationCurve(CurveForm.CONSTANT, TAU_SOLO),
                      IterationCurve(CurveForm.AFFINE_IN_C, 0.0174, c_chunk=0.000062))
LIMIT_S = 20.0


class LaggingCore(EngineCore):
    """An engine on a machine too loaded to keep up: its first iteration holds the event
    loop for `LAG_S` wall seconds (a synchronous sleep, as a busy CPU would), so every
    iteration after it is already due and the loop catches up without sleeping."""

    async def _iterate(self, head: Stream | None, k: int, end: float) -> float:
        if self.iterations == 0:
            time.sleep(LAG_S)
        return await super()._iterate(head, k, end)


LAG_S = 0.25  # at a time scale of 4 or more, a model second behind: dozens of iterations


@asynccontextmanager
async def engine(mixed: bool, scale: float = 1.0, interval: int = 1, lead: float = 0.0,
                 lag: bool = False) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    core = (LaggingCore if lag else EngineCore)(TIMING, mixed, scale, interval, lead)
    runner, port = await start_site(EngineServer(core, "t").app(), 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{port}", session
    finally:
        await runner.cleanup()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), LIMIT_S))


async def post(session: aiohttp.ClientSession, url: str, payload: Any,
               path: str = "/v1/completions") -> tuple[int, Any]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with session.post(url + path, data=data) as r:
        return r.status, await r.json(content_type=None)


def test_full_request_takes_its_iterations_in_model_time() -> None:
    # 512 prompt tokens: two mixed iterations with a 256-token chunk; then 10 decode-only
    # iterations with one stream. Model time is scheduled absolutely, so the span is exact
    # whatever the machine's timer jitter.
    async def body() -> None:
        async with engine(mixed=True, scale=5.0) as (url, s):
            status, out = await post(s, url, {"prompt_tokens": 512, "max_tokens": 10})
            assert status == 200
            span = out["fluidgate"]["finish_time"] - out["fluidgate"]["start_time"]
            assert span == pytest.approx(2 * TAU_MIX_256 + 10 * TAU_SOLO, abs=1e-9)
            assert out["usage"] == {"prompt_tokens": 512, "completion_tokens": 10,
                                    "total_tokens": 522}
    run(body)


def test_solo_engine_batches_at_most_B_streams() -> None:
    # 20 decodes of 5 tokens on a B = 16 solo engine: 16 run together and finish after 5
    # iterations; the other 4 start when they leave and finish 5 iterations later.
    async def body() -> None:
        async with engine(mixed=False, scale=2.0) as (url, s):
            kv = {"do_remote_prefill": True}
            outs = await asyncio.gather(*(post(s, url, {"prompt": [1, 2, 3], "max_tokens": 5,
                                                        "kv_transfer_params": kv})
                                          for _ in range(20)))
            assert all(status == 200 for status, _ in outs)
            spans = sorted(o["fluidgate"]["finish_time"] - o["fluidgate"]["start_time"]
                           for _, o in outs)
            assert spans == pytest.approx([5 * TAU_SOLO] * 20, abs=1e-9)
            first = min(o["fluidgate"]["start_time"] for _, o in outs)
            starts = sorted(round(o["fluidgate"]["start_time"] - first, 9) for _, o in outs)
            # all 20 arrive within a few ms; at most 16 start in the first iteration
            late = [t for t in starts if t >= 5 * TAU_SOLO - 1e-9]
            assert len(late) >= 4
    run(body)


def test_two_step_protocol() -> None:
    async def body() -> None:
        async with engine(mixed=True, scale=10.0) as (mixed, s), \
                engine(mixed=False, scale=10.0) as (solo, s2):
            status, out = await post(s2, solo, {"prompt_tokens": 100, "max_tokens": 3})
            assert status == 400 and "decode-only" in out["error"]["message"]
            status, pre = await post(s, mixed, {
                "prompt_tokens": 300, "max_tokens": 1,
                "kv_transfer_params": {"do_remote_decode": True}})
            assert status == 200
            kv = pre["kv_transfer_params"]
            assert kv["do_remote_prefill"] is True and kv["prompt_tokens"] == 300
            # 300 tokens: a 256-token chunk then a 44-token one
            span = pre["fluidgate"]["finish_time"] - pre["fluidgate"]["start_time"]
            assert span == pytest.approx(TAU_MIX_256 + max(TAU_SOLO, 0.0174 + 0.000062 * 44))
            status, dec = await post(s2, solo, {"prompt_tokens": 300, "max_tokens": 7,
                                                "kv_transfer_params": kv})
            assert status == 200 and dec["usage"]["completion_tokens"] == 7
            span = dec["fluidgate"]["finish_time"] - dec["fluidgate"]["start_time"]
            assert span == pytest.approx(7 * TAU_SOLO)
    run(body)


@pytest.mark.parametrize("lag", [False, True])
def test_streaming_chunks_add_up(lag: bool) -> None:
    # Lagging, the engine runs the request's remaining iterations in one catch-up stretch;
    # it still hands out the first token alone and the rest in chunks of at most 4.
    async def body() -> None:
        async with engine(mixed=True, scale=4.0, interval=4, lag=lag) as (url, s):
            payload = {"messages": [{"role": "user", "content": "a b c"}], "max_tokens": 10,
                       "stream": True}
            async with s.post(url + "/v1/chat/completions", json=payload) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")
                lines = [ln.decode().strip() async for ln in r.content]
            events = [ln[6:] for ln in lines if ln.startswith("data: ")]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert sum(c["fluidgate"]["tokens"] for c in chunks) == 10
            assert chunks[0]["fluidgate"]["tokens"] == 1  # the first token is not held back
            assert all(c["fluidgate"]["tokens"] <= 4 for c in chunks)
            assert chunks[-1]["choices"][0]["finish_reason"] == "length"
            assert chunks[-1]["usage"]["prompt_tokens"] == 3
    run(body)


@pytest.mark.parametrize("raw", [
    b"{not json", b"[1, 2]", b'{"prompt": "hi", "max_tokens": "many"}',
    b'{"prompt": "hi", "max_tokens": -3}', b'{"prompt": "hi", "max_tokens": 1e9}',
    b'{"prompt": []}', b'{"prompt": [1, "a"]}', b'{"prompt_tokens": 0}',
    b'{"prompt": "x", "stream": "yes"}', b'{"prompt": "x", "kv_transfer_params": [1]}',
    b'{"prompt": "x", "kv_transfer_params": {}}', b"[" * 100_000, b"\xff\xfe",
])
def test_malformed_bodies_get_400_json_and_the_engine_stays_up(raw: bytes) -> None:
    async def body() -> None:
        async with engine(mixed=True, scale=10.0) as (url, s):
            status, out = await post(s, url, raw)
            assert status == 400 and out["error"]["code"] == 400
            status, out = await post(s, url, {"prompt": "one two", "max_tokens": 2})
            assert status == 200 and out["usage"]["completion_tokens"] == 2
            async with s.get(url + "/health") as r:
                assert r.status == 200
    run(body)


@pytest.mark.parametrize("lag", [False, True])
@pytest.mark.parametrize("lead", [0.0, 0.001])
def test_prefill_end_is_announced_only_with_a_lead(lead: float, lag: bool) -> None:
    # 600 tokens: chunks of 256, 256, 88. A lead shorter than an iteration announces the
    # end once, when the last chunk starts, also when the engine lags and runs the last two
    # chunks in one catch-up stretch; no lead, never.
    async def body() -> None:
        async with engine(mixed=True, scale=5.0, lead=lead, lag=lag) as (url, s):
            payload = {"prompt_tokens": 600, "max_tokens": 1, "stream": True,
                       "kv_transfer_params": {"do_remote_decode": True}}
            async with s.post(url + "/v1/completions", json=payload) as r:
                lines = [ln.decode().strip() async for ln in r.content]
            events = [json.loads(ln[6:]) for ln in lines
                      if ln.startswith("data: {")]
            announced = [e["fluidgate"]["prefill_ends"] for e in events
                         if "prefill_ends" in e["fluidgate"]]
            assert events[-1]["kv_transfer_params"]["prompt_tokens"] == 600
            assert len(announced) == (lead > 0)
    run(body)


def test_the_lead_counts_the_prefills_queued_ahead() -> None:
    # Three 300-token prefills submitted at once (256 + 44 tokens: 33.272 + 22 ms each).
    # With a lead of 0.1 model s, the first iteration (ending at 33.272 ms) already has the
    # first two ends in sight, at 55.272 and 110.544 ms, but not the third (165.816 ms, 132.5
    # ms past the iteration's end): the engine announces a queued prefill, not only the head,
    # so short prompts do not leave the gateway one iteration for its round trip.
    async def body() -> None:
        core = EngineCore(TIMING, True, 20.0, 1, lead=0.1)
        streams = [Stream(300, 0, prefill_only=True) for _ in range(3)]
        task = asyncio.create_task(core.run())
        try:
            for st in streams:
                core.submit(st)
            await streams[0].ready.wait()  # the first announcement, at the first iteration
            one = TAU_MIX_256 + TAU_SOLO
            assert [st.handoff for st in streams] == pytest.approx([one, 2 * one, -1.0])
            while not streams[2].done:
                await asyncio.sleep(0.01)
            assert [st.finish_time for st in streams] == pytest.approx([one, 2 * one, 3 * one])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    run(body)


class FailingCore(EngineCore):
    """An engine whose first iteration with two decodes raises, as a real pass's CUDA error
    would."""

    async def _iterate(self, head: Stream | None, k: int, end: float) -> float:
        if len(self._running) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (test)")
        return await super()._iterate(head, k, end)


def test_a_raising_iteration_fails_its_requests_and_the_engine(
        caplog: pytest.LogCaptureFixture) -> None:
    # A streamed request is decoding (its first token has come) when a second one joins;
    # the first iteration with both raises. Before the fix the loop task died and both
    # requests waited forever (the time limit failed the test).
    async def body() -> None:
        core = FailingCore(TIMING, True, 1.0, 1, 0)
        runner, port = await start_site(EngineServer(core, "t").app(), 0)
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s, s.post(url + "/v1/completions", json={
                    "prompt": "a b", "max_tokens": 400, "stream": True}) as r:
                assert r.status == 200
                lines = [(await r.content.readline()).decode().strip()]
                status, whole = await post(s, url, {"prompt": "c d", "max_tokens": 20})
                lines += [ln.decode().strip() async for ln in r.content]
                events = [json.loads(ln[6:]) for ln in lines if ln.startswith("data: ")]
                # tokens one at a time, then the error event and no "[DONE]"
                assert all(e["fluidgate"]["tokens"] == 1 for e in events[:-1])
                assert 1 <= len(events) - 1 < 400
                error = events[-1]["error"]
                assert error["code"] == 500 and error["type"] == "engine_failed"
                assert "RuntimeError: CUDA error" in error["message"]
                assert status == 500 and whole["error"]["message"] == error["message"]
                async with s.get(url + "/health") as h:
                    health = await h.json()
                    assert h.status == 503 and health["status"] == "failed"
                status, late = await post(s, url, {"prompt": "e", "max_tokens": 2})
                assert status == 500 and late["error"]["type"] == "engine_failed"
        finally:
            await runner.cleanup()
    run(body)
    failed = [r for r in caplog.records if r.name == "fluidgate.harness.core"]
    assert len(failed) == 1 and failed[0].levelname == "ERROR"
    assert failed[0].exc_info is not None and "2 requests" in failed[0].getMessage()
