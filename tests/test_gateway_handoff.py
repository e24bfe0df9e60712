"""The gateway's handoff from prefill to decode, in each protocol, against emulated engines.

Each engine records the bodies it receives (an aiohttp middleware the test adds), so the
tests check the requests on the wire against the protocol as the engines' own proxies send
them (vLLM's toy_proxy_server.py, SGLang's mini_lb.py; `handoff.py`), written out here by
hand, and the end-to-end accounting. Services run on 127.0.0.1, loads are a few requests.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fluidgate.controllers.spec import ControllerSpec
from fluidgate.harness.bootstrap import HALF_HEADER
from fluidgate.harness.core import EngineCore
from fluidgate.harness.engine import EngineServer
from fluidgate.harness.gateway import Gateway
from fluidgate.harness.handoff import Handoff, vllm_prefill_body
from fluidgate.harness.load import Arrival, LoadRun
from fluidgate.harness.serve import start_site
from fluidgate.harness.timing import timing_from_spec
from tests.harness_support import two_gpu_spec

LIMIT_S = 60.0


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ControllerSpec:
    return two_gpu_spec(tmp_path_factory.mktemp("spec"))


@dataclass
class Seen:
    """What one engine received: each request body, and its role."""

    mixed: bool
    port: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    halves: list[str | None] = field(default_factory=list)  # each body's X-Fluidgate-Half


def _recorder(seen: Seen) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request],
                     Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.method == "POST":
            body = json.loads(await request.read())
            seen.bodies.append(body)
            seen.halves.append(request.headers.get(HALF_HEADER))
            return await handler(request)
        return await handler(request)
    return record


@asynccontextmanager
async def cluster(spec: ControllerSpec, scale: float, *, lead: float = 0.0,
                  streamed_prefill: bool = False, handoff: Handoff = Handoff.VLLM
                  ) -> AsyncIterator[tuple[str, list[Seen], Gateway]]:
    timing = timing_from_spec(spec)
    async with AsyncExitStack() as stack:
        urls: dict[bool, list[str]] = {True: [], False: []}
        seen = []
        for is_mixed in (True, False):
            core = EngineCore(timing, is_mixed, scale, stream_interval=50, lead=lead)
            app = EngineServer(core, str(len(seen))).app()
            seen.append(Seen(is_mixed))
            app.middlewares.append(_recorder(seen[-1]))
            runner, port = await start_site(app, 0)
            stack.push_async_callback(runner.cleanup)
            seen[-1].port = port
            urls[is_mixed].append(f"http://127.0.0.1:{port}")
        gw = Gateway(spec, urls[True], urls[False], time_scale=scale, seed=3,
                     health_interval=0.1, streamed_prefill=streamed_prefill,
                     handoff=handoff)
        runner, port = await start_site(gw.app(), 0)
        stack.push_async_callback(runner.cleanup)
        yield f"http://127.0.0.1:{port}", seen, gw


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), LIMIT_S))


VLLM_PREFILL_KV = {"do_remote_decode": True, "do_remote_prefill": False,
                   "remote_engine_id": None, "remote_block_ids": None, "remote_host": None,
                   "remote_port": None}


def test_vllm_prefill_body_is_the_proxys() -> None:
    body = {"model": "m", "prompt": [1, 2, 3], "max_tokens": 40, "max_completion_tokens": 40,
            "stream": True, "stream_options": {"include_usage": True}, "min_tokens": 5,
            "min_completion_tokens": 5, "ignore_eos": True}
    assert vllm_prefill_body(body) == {
        "model": "m", "prompt": [1, 2, 3], "max_tokens": 1, "max_completion_tokens": 1,
        "stream": False, "ignore_eos": True, "kv_transfer_params": VLLM_PREFILL_KV}
    assert body["max_tokens"] == 40 and "stream_options" in body  # the client's is kept


@pytest.mark.parametrize("streamed_prefill", [False, True])
def test_vllm_handoff_end_to_end(spec: ControllerSpec, streamed_prefill: bool) -> None:
    # Requests far apart on an idle cluster, all placed on the solo engine or the mixed one.
    arrivals = [Arrival(0.5 * i, i % 2, 300, 20, 1000.0) for i in range(8)]

    async def body() -> None:
        async with cluster(spec, 20.0, lead=0.001 if streamed_prefill else 0.0,
                           streamed_prefill=streamed_prefill) as (url, seen, gw):
            records = await LoadRun(spec, url, arrivals, time_scale=20.0).run()
            assert Counter(r.outcome for r in records) == {"served": 8}
            assert all(r.tokens == 20 for r in records)
            prefills = [b for b in seen[0].bodies if "do_remote_decode" in
                        b.get("kv_transfer_params", {})]
            assert len(prefills) == 8
            for p in prefills:
                assert p["kv_transfer_params"] == VLLM_PREFILL_KV
                assert p["max_tokens"] == 1 and p["stream"] is streamed_prefill
            decodes = [b for s in seen for b in s.bodies
                       if b.get("kv_transfer_params", {}).get("do_remote_prefill")]
            assert len(decodes) == 8
            # each decode carries what its prefill's engine returned, and the other 19 tokens
            assert all(d["kv_transfer_params"]["remote_engine_id"] == "0" and
                       d["max_tokens"] == 19 and d["stream"] is True for d in decodes)
            assert sum(c.served for c in gw.ctl.stats().classes) == 8
    run(body)


def test_sglang_pairs_end_to_end(spec: ControllerSpec) -> None:
    # Each request: its prefill half on the mixed engine, its decode half on the engine the
    # router chose (solo, or the mixed one marked as the decode half), one room per pair.
    arrivals = [Arrival(0.5 * i, i % 2, 300, 20, 1000.0) for i in range(8)]

    async def body() -> None:
        async with cluster(spec, 20.0, handoff=Handoff.SGLANG) as (url, seen, gw):
            records = await LoadRun(spec, url, arrivals, time_scale=20.0).run()
            assert Counter(r.outcome for r in records) == {"served": 8}
            assert all(r.tokens == 20 and r.ttft is not None for r in records)
            mixed = seen[0]
            halves = [(b, h, s.mixed) for s in seen for b, h in zip(s.bodies, s.halves,
                                                                    strict=True)]
            assert all(b["bootstrap_host"] == "127.0.0.1" and b["bootstrap_port"] == mixed.port
                       and "kv_transfer_params" not in b for b, _, _ in halves)
            prefill = [b for b, h, m in halves if m and h is None]
            decode = [b for b, h, m in halves if not m or h == "decode"]
            assert len(prefill) == len(decode) == 8
            # the same body, room included, went to both halves of each pair
            by_room = {b["bootstrap_room"]: b for b in prefill}
            assert len(by_room) == 8
            assert all(by_room[d["bootstrap_room"]] == d for d in decode)
            assert all(0 <= r < 1 << 63 for r in by_room)
            assert sum(c.served for c in gw.ctl.stats().classes) == 8
            assert not any(b.prefilling or b.decoding for b in gw.backends.all)
    run(body)


def test_an_emulated_prefill_half_waits_for_its_decode_half(spec: ControllerSpec) -> None:
    # As SGLang's prefill server holds a request until the decode server has hand-shaken,
    # the emulated prefill half does not answer alone; with its decode half both finish.
    async def body() -> None:
        async with cluster(spec, 20.0) as (_, seen, _gw), aiohttp.ClientSession() as s:
            mixed, solo = seen
            pair = {"prompt_tokens": 300, "max_tokens": 5, "bootstrap_host": "127.0.0.1",
                    "bootstrap_port": mixed.port, "bootstrap_room": 7}

            async def post(port: int) -> dict[str, Any]:
                async with s.post(f"http://127.0.0.1:{port}/v1/completions", json=pair) as r:
                    assert r.status == 200
                    answer: dict[str, Any] = await r.json()
                    return answer
            prefill = asyncio.create_task(post(mixed.port))
            done, _ = await asyncio.wait({prefill}, timeout=0.5)
            assert not done  # 300 tokens take ~50 ms of model time, 2.5 ms of wall time
            decoded = await post(solo.port)
            prefilled = await prefill
            assert prefilled["usage"]["completion_tokens"] == 1
            assert decoded["usage"]["completion_tokens"] == 5
            assert decoded["choices"][0]["text"] == " x" * 5
    run(body)


def test_bad_bootstrap_fields_are_400(spec: ControllerSpec) -> None:
    async def body() -> None:
        async with cluster(spec, 20.0) as (_, seen, _gw), aiohttp.ClientSession() as s:
            for extra in [{"bootstrap_room": 1},
                          {"bootstrap_host": "h", "bootstrap_port": 0, "bootstrap_room": 1},
                          {"bootstrap_host": "h", "bootstrap_port": 5, "bootstrap_room": -1},
                          {"bootstrap_host": "h", "bootstrap_port": 5, "bootstrap_room": 1,
                           "kv_transfer_params": {"do_remote_decode": True}}]:
                async with s.post(f"http://127.0.0.1:{seen[0].port}/v1/completions",
                                  json={"prompt_tokens": 3, **extra}) as r:
                    assert r.status == 400
    run(body)


def test_bootstrap_ports_one_for_all_or_one_per_mixed_engine(spec: ControllerSpec) -> None:
    mixed = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    gw = Gateway(spec, mixed, [], handoff=Handoff.SGLANG)
    assert [b.bootstrap_port for b in gw.backends.all] == [9001, 9002]  # their own ports
    gw = Gateway(spec, mixed, [], handoff=Handoff.SGLANG, bootstrap_ports=[8998])
    assert [b.bootstrap_port for b in gw.backends.all] == [8998, 8998]
    gw = Gateway(spec, mixed, [], handoff=Handoff.SGLANG, bootstrap_ports=[7001, 7002])
    assert [b.bootstrap_port for b in gw.backends.all] == [7001, 7002]
    with pytest.raises(ValueError, match="3 bootstrap ports for 2 mixed engines"):
        Gateway(spec, mixed, [], handoff=Handoff.SGLANG, bootstrap_ports=[1, 2, 3])
    with pytest.raises(ValueError, match="vllm handoff only"):
        Gateway(spec, mixed, [], handoff=Handoff.SGLANG, streamed_prefill=True)


@pytest.mark.parametrize("decode_first", [True, False])
def test_a_failed_prefill_engine_does_not_keep_its_decode_half_waiting(
        spec: ControllerSpec, decode_first: bool) -> None:
    # A pair whose prefill half reaches an engine that has already failed: it answers 500 at
    # once, and its decode half, whichever half comes first, is told (424) instead of
    # waiting out the 300 s bootstrap time-out for a prefill that never runs.
    timing = timing_from_spec(spec)

    async def body() -> None:
        async with AsyncExitStack() as stack:
            ports = []
            for is_mixed in (True, False):
                core = EngineCore(timing, is_mixed, 20.0)
                if is_mixed:
                    core.failure = "engine iteration failed: RuntimeError: test"
                runner, port = await start_site(EngineServer(core, str(len(ports))).app(), 0)
                stack.push_async_callback(runner.cleanup)
                ports.append(port)
            mixed, solo = ports
            s = await stack.enter_async_context(aiohttp.ClientSession())
            pair = {"prompt_tokens": 30, "max_tokens": 5, "bootstrap_host": "127.0.0.1",
                    "bootstrap_port": mixed, "bootstrap_room": 7}

            async def post(port: int) -> int:
                async with s.post(f"http://127.0.0.1:{port}/v1/completions", json=pair) as r:
                    return r.status
            first = asyncio.create_task(post(solo if decode_first else mixed))
            await asyncio.sleep(0.05)
            second = post(mixed if decode_first else solo)
            a, b = await asyncio.wait_for(asyncio.gather(first, second), 10.0)
            decode, prefill = (a, b) if decode_first else (b, a)
            assert (prefill, decode) == (500, 424)
    run(body)
