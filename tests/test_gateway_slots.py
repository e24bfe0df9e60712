"""A client that goes away gives back everything its request held in the gateway.

One mixed engine with `B = 2` (one prefill slot, one decode slot), so each place a request
can be is easy to reach: waiting in the class queue, prefilling, buffered for a decode
slot, decoding mid-stream. At each, the client disconnects; the gateway must then release
the queue entry, the prefill slot or the decode slot (the engine's counts in `backends`
and the controller's per-class counts), count the request once as abandoned, and still
serve the next request. Every wait is bounded (a few wall seconds); nothing here times
the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from fluidgate.controllers.runtime import Pool
from fluidgate.controllers.spec import CLASS_HEADER, ControllerSpec
from fluidgate.harness.backends import Backend
from fluidgate.harness.core import Stream
from fluidgate.harness.engine import CORE_KEY
from fluidgate.harness.gateway import PATIENCE_HEADER, Gateway
from tests.test_harness_gateway import cluster, run
from tests.test_harness_gateway import spec as spec  # the module's fixture, shared

SETTLE_S = 5.0  # wall seconds a release may take (it is immediate; this bounds the wait)
HEADERS = {CLASS_HEADER: "decode_heavy", PATIENCE_HEADER: "1e9"}  # never runs out


@pytest.fixture
def small(spec: ControllerSpec) -> ControllerSpec:
    """The reference plan on engines with B = 2: one prefill and one decode slot each."""
    return spec.model_copy(update={"cluster": spec.cluster.model_copy(
        update={"max_batch": 2})})


async def until(what: Callable[[], bool], limit: float = SETTLE_S) -> bool:
    """Poll `what` every 10 ms for at most `limit` wall seconds."""
    for _ in range(int(limit / 0.01)):
        if what():
            return True
        await asyncio.sleep(0.01)
    return what()


def state(gw: Gateway) -> dict[str, int]:
    """What the gateway holds now, summed over classes and engines."""
    st = gw.ctl.stats().classes
    return {"waiting": sum(c.waiting for c in st), "prefilling": sum(c.prefilling for c in st),
            "buffered": sum(c.buffered for c in st),
            "decoding": sum(c.decoding_solo + c.decoding_mixed for c in st),
            "prefill_slots_busy": sum(b.prefilling for b in gw.backends.all),
            "decode_slots_busy": sum(b.decoding for b in gw.backends.all),
            "prefill_waiters": len(gw._prefill_wait), "decode_waiters": len(gw._decode_wait)}


def empty(gw: Gateway) -> bool:
    return not any(state(gw).values())


def outcome_counts(gw: Gateway) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in gw.metrics.requests.collect():
        for s in metric.samples:
            if s.name.endswith("_total"):
                out[s.labels["outcome"]] = out.get(s.labels["outcome"], 0) + s.value
    return out


async def _stream(s: aiohttp.ClientSession, url: str, prompt: int, output: int,
                  events: int) -> None:
    """Send a streamed request and read `events` data lines of its answer (0: none);
    then wait until cancelled (the test cancels the task: the client disconnects)."""
    async with s.post(url + "/v1/completions", headers=HEADERS, json={
            "prompt_tokens": prompt, "max_tokens": output, "stream": True}) as r:
        assert r.status == 200
        seen = 0
        while seen < events:
            line = await r.content.readline()
            assert line, "the stream ended early"
            seen += line.startswith(b"data: ")
        await asyncio.Event().wait()


async def _leave(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_disconnects_at_every_stage_release_all_slots(small: ControllerSpec) -> None:
    async def body() -> None:
        async with cluster(small, scale=1.0, mixed=1, solo=0) as (url, _, gw), \
                aiohttp.ClientSession() as s:
            engine = gw.backends.all[0]
            assert engine.pool is Pool.MIXED and engine.decode_slots == 1
            # A: a 100,000-token prompt keeps the prefill slot for ~13 model (wall) seconds
            a = asyncio.create_task(_stream(s, url, 100_000, 5, 0))
            assert await until(lambda: state(gw)["prefilling"] == 1)
            # B waits in the queue behind it, then leaves: its queue entry goes
            b = asyncio.create_task(_stream(s, url, 10, 5, 0))
            assert await until(lambda: state(gw)["waiting"] == 1)
            await _leave(b)
            assert await until(lambda: state(gw)["waiting"] == 0), state(gw)
            assert engine.prefilling and state(gw)["prefilling"] == 1  # A still prefills
            # A leaves during its prefill: the prefill slot comes back
            await _leave(a)
            assert await until(lambda: empty(gw)), state(gw)
            assert engine.free_prefill

            # C decodes (a 100,000-token answer, ~37 minutes of tokens) and holds the only
            # decode slot; D is prefilled, then buffered for a slot, and leaves from there
            c = asyncio.create_task(_stream(s, url, 10, 100_000, 2))
            assert await until(lambda: engine.decoding == 1 and state(gw)["decoding"] == 1)
            d = asyncio.create_task(_stream(s, url, 10, 5, 1))
            assert await until(lambda: state(gw)["buffered"] == 1)
            await _leave(d)
            assert await until(lambda: state(gw)["buffered"] == 0), state(gw)
            assert engine.decoding == 1
            # C leaves mid-stream: the decode slot comes back
            await _leave(c)
            assert await until(lambda: empty(gw)), state(gw)
            assert engine.free_decode == 1 and engine.free_prefill

            # the engine was never taken for dead, and the next request is served whole
            async with s.post(url + "/v1/completions", headers=HEADERS,
                              json={"prompt_tokens": 10, "max_tokens": 3}) as r:
                assert r.status == 200
                assert (await r.json())["usage"]["completion_tokens"] == 3
            assert engine.up and gw.metrics.engines_down._value.get() == 0
            counts = outcome_counts(gw)
            assert counts == {"abandoned": 4.0, "served": 1.0}, counts
            classes = gw.ctl.stats().classes
            assert sum(c.abandoned for c in classes) == 4
            assert sum(c.served for c in classes) == 1
            assert empty(gw), state(gw)
    run(body)


def test_a_slot_handed_over_as_its_waiter_is_cancelled_is_given_back() -> None:
    # The dispatcher takes a slot for a waiting ticket and resolves its future; the client
    # leaves before the handler runs again. The slot must not stay taken by nobody.
    async def body() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Backend] = loop.create_future()
        given: list[Backend] = []
        task = asyncio.create_task(Gateway._wait(fut, {7: fut}, 7, loop.time() + 60.0,
                                                 given.append))
        await asyncio.sleep(0)  # it waits
        engine = Backend("http://127.0.0.1:9", Pool.MIXED, 1, prefilling=True)
        fut.set_result(engine)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert given == [engine]
    run(body)


def test_an_early_prefill_free_is_not_repeated(spec: ControllerSpec) -> None:
    # With a lead under one iteration the engine announces a prefill's last iteration and
    # the gateway frees the slot then, sending the next prefill. When the first prefill's
    # stream ends, the slot is the next one's: freeing it again would send a third prefill
    # while the second runs, and the engine's queue would grow past the plan's one slot.
    async def body() -> None:
        async with cluster(spec, scale=1.0, mixed=1, solo=1, lead=0.001) as (
                url, engines, gw), aiohttp.ClientSession() as s:
            core = engines[0].app[CORE_KEY]
            most = 0
            submit = core.submit

            def counting(stream: Stream) -> None:
                nonlocal most
                submit(stream)
                most = max(most, core.load[0])
            core.submit = counting  # type: ignore[method-assign]

            async def one() -> int:
                async with s.post(url + "/v1/completions", headers=HEADERS, json={
                        "prompt_tokens": 600, "max_tokens": 2, "stream": True}) as r:
                    await r.read()
                    return r.status
            assert await asyncio.gather(*(one() for _ in range(12))) == [200] * 12
            assert 1 <= most <= 2  # the one finishing and the next
            assert empty(gw), state(gw)
    run(body)
