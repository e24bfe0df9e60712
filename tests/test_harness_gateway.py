"""The gateway and load generator in front of emulated engines, all in one event loop.

Every service is started by the test on 127.0.0.1 (free ports) and stopped by it; loads are
a few dozen requests under a wall-clock limit. Checks: every request is accounted for, a
request that waits past its patience is abandoned with 429, killing an engine mid-run loses
nothing from the accounting, bad input is a 400, and /metrics shows the plan's targets.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fluidgate.controllers.spec import ControllerSpec
from fluidgate.harness.core import EngineCore, Stream
from fluidgate.harness.engine import EngineServer
from fluidgate.harness.gateway import Gateway
from fluidgate.harness.load import Arrival, LoadRun
from fluidgate.harness.protocol import SSE_DONE, Api, chunk_payload, sse
from fluidgate.harness.serve import start_site
from fluidgate.harness.timing import timing_from_spec
from tests.harness_support import two_gpu_spec

SPECS = Path(__file__).parent / "fixtures"
LIMIT_S = 60.0


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ControllerSpec:
    return two_gpu_spec(tmp_path_factory.mktemp("spec"))


@asynccontextmanager
async def cluster(spec: ControllerSpec, scale: float, mixed: int = 1, solo: int = 1,
                  lead: float = 0.0) -> AsyncIterator[tuple[str, list[web.AppRunner], Gateway]]:
    timing = timing_from_spec(spec)
    async with AsyncExitStack() as stack:
        urls: dict[bool, list[str]] = {True: [], False: []}
        engines = []
        for is_mixed in [True] * mixed + [False] * solo:
            core = EngineCore(timing, is_mixed, scale, stream_interval=50, lead=lead)
            runner, port = await start_site(EngineServer(core, str(len(engines))).app(), 0)
            stack.push_async_callback(runner.cleanup)
            engines.append(runner)
            urls[is_mixed].append(f"http://127.0.0.1:{port}")
        gw = Gateway(spec, urls[True], urls[False], time_scale=scale, seed=3,
                     health_interval=0.1, streamed_prefill=lead > 0)
        runner, port = await start_site(gw.app(), 0)
        stack.push_async_callback(runner.cleanup)
        yield f"http://127.0.0.1:{port}", engines, gw


async def _kill(runner: web.AppRunner) -> None:
    """Stop an engine abruptly: no new connections, open ones cut (not a graceful drain,
    which would let its decodes finish)."""
    for site in list(runner.sites):
        await site.stop()
    assert runner.server is not None
    await runner.server.shutdown(0.01)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), LIMIT_S))


def outcomes(records: list) -> Counter[str]:  # type: ignore[type-arg]
    return Counter(r.outcome for r in records)


def test_every_request_served_when_the_cluster_is_idle(spec: ControllerSpec) -> None:
    # 12 short requests spaced far apart on an idle cluster: all served, none waits.
    arrivals = [Arrival(0.5 * i, i % 2, 300, 20, 1000.0) for i in range(12)]

    async def body() -> None:
        async with cluster(spec, scale=20.0) as (url, _, gw):
            records = await LoadRun(spec, url, arrivals, time_scale=20.0).run()
            assert outcomes(records) == {"served": 12}
            assert all(r.tokens == 20 and r.ttft is not None and r.ttft > 0 for r in records)
            stats = gw.ctl.stats()
            assert sum(c.served for c in stats.classes) == 12
            assert all(c.waiting == c.prefilling == c.buffered == 0 for c in stats.classes)
    run(body)


def test_patience_expiry_is_abandoned_with_429(spec: ControllerSpec) -> None:
    # One mixed engine prefills one request at a time: a 3000-token prompt takes 12
    # iterations of ~33 ms (~0.4 s model). Ten arrive at once with 0.05 s patience: the
    # first is admitted at once, the rest cannot start before their patience runs out.
    arrivals = [Arrival(0.0, 1, 3000, 5, 0.05) for _ in range(10)]

    async def body() -> None:
        async with cluster(spec, scale=5.0) as (url, _, gw):
            records = await LoadRun(spec, url, arrivals, time_scale=5.0).run()
            got = outcomes(records)
            assert got["served"] >= 1 and got["abandoned"] >= 8
            assert got["served"] + got["abandoned"] == 10
            assert all(r.status == 429 for r in records if r.outcome == "abandoned")
            stats = gw.ctl.stats()
            assert sum(c.abandoned for c in stats.classes) == got["abandoned"]
    run(body)


def test_an_announced_prefill_frees_its_slot_once(spec: ControllerSpec) -> None:
    # Eight 3000-token prompts at once (0.395 s of prefill each on the one mixed engine),
    # each with 1 s of patience, and an engine that announces each prefill's end. Run back
    # to back, prefills start at 0, 0.395 and 0.79 s; the fourth could not start before
    # 1.185 s, after every patience ran out. So at most three are served, each with its
    # first token by 1 + 0.395 s. Freeing the slot at the announcement and again at the
    # end sent the engine a prefill per free: five were served, the last at about 2 s.
    prefill = 11 * (0.0174 + 0.000062 * 256) + (0.0174 + 0.000062 * 184)
    arrivals = [Arrival(0.0, 1, 3000, 5, 1.0) for _ in range(8)]

    async def body() -> None:
        async with cluster(spec, scale=2.0, lead=0.05) as (url, _, _gw):
            records = await LoadRun(spec, url, arrivals, time_scale=2.0).run()
            got = outcomes(records)
            assert got["served"] + got["abandoned"] == 8
            assert 1 <= got["served"] <= 3
            ttfts = [r.ttft for r in records if r.outcome == "served"]
            assert all(t is not None and t < 1.0 + prefill + 0.2 for t in ttfts), ttfts
    run(body)


def test_killing_an_engine_loses_no_request(spec: ControllerSpec) -> None:
    arrivals = [Arrival(0.05 * i, i % 2, 300, 200, 1000.0) for i in range(40)]

    async def body() -> None:
        async with cluster(spec, scale=10.0, mixed=1, solo=2) as (url, engines, gw):
            run_ = LoadRun(spec, url, arrivals, time_scale=10.0, drain_limit=20.0)
            task = asyncio.create_task(run_.run())
            victim = gw.backends.all[1]
            for _ in range(400):  # wait (at most 20 s) until decodes run on the victim
                if victim.decoding > 0:
                    break
                await asyncio.sleep(0.05)
            assert victim.decoding > 0
            await _kill(engines[1])  # a solo engine dies with decodes on it
            records = await task
            got = outcomes(records)
            assert len(records) == 40 and sum(got.values()) == 40
            assert got["failed"] >= 1 and got["served"] >= 1
            assert not gw.backends.all[1].up
    run(body)


def test_bad_requests_and_metrics(spec: ControllerSpec) -> None:
    async def body() -> None:
        async with cluster(spec, scale=10.0) as (url, _, _gw), aiohttp.ClientSession() as s:
            for headers, data in [({}, b'{"prompt_tokens": 5, "model": 7}'),
                                  ({"X-Fluidgate-Class": "nope"}, b'{"prompt_tokens": 5}'),
                                  ({"X-Fluidgate-Class": "decode_heavy"}, b"{oops"),
                                  ({"X-Fluidgate-Class": "decode_heavy",
                                    "X-Fluidgate-Patience": "-1"}, b'{"prompt_tokens": 5}')]:
                async with s.post(url + "/v1/completions", data=data, headers=headers) as r:
                    assert r.status == 400
                    assert (await r.json(content_type=None))["error"]["code"] == 400
            async with s.post(url + "/v1/completions", data=b" " * (2 << 20), headers={
                    "X-Fluidgate-Class": "decode_heavy"}) as r:  # over the 1 MiB limit
                assert r.status == 413
                assert (await r.json())["error"]["code"] == 413  # a JSON error, as the rest
            async with s.post(url + "/v1/completions", headers={
                    "X-Fluidgate-Class": "decode_heavy"},
                    json={"prompt_tokens": 5, "max_tokens": 3}) as r:
                assert r.status == 200
                out = json.loads(await r.text())
                assert out["usage"]["completion_tokens"] == 3
            async with s.get(url + "/metrics") as r:
                text = await r.text()
            target = spec.classes[0].targets.prefill
            assert (f'fluidgate_gateway_plan_target{{class_name="decode_heavy",'
                    f'state="prefilling"}} {target!r}') in text
            assert 'outcome="rejected"} 5.0' in text
            assert 'fluidgate_gateway_requests_total{class_name="decode_heavy",' \
                   'outcome="served"} 1.0' in text
    run(body)


PREFILL_TOKEN = " 4242"  # a token no emulated engine writes (they write " x")


def _stub_engine(bodies: list[dict[str, object]]) -> web.Application:
    """A mixed engine that answers the first step with `PREFILL_TOKEN` and a decode with
    " x" tokens, recording each body, so a test can tell whose first token a client got."""
    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        bodies.append(body)
        api = Api.CHAT if request.path.endswith("/chat/completions") else Api.COMPLETIONS
        kv = body["kv_transfer_params"]
        if kv.get("do_remote_decode"):
            answer = chunk_payload(api, "stub", 1, "length", {
                "kv_transfer_params": {"do_remote_prefill": True, "remote_engine_id": "stub"}},
                text=PREFILL_TOKEN)
        else:
            answer = chunk_payload(api, "stub", body["max_tokens"], "length")
        if not body["stream"]:  # vLLM's first step: one JSON answer
            if api is Api.CHAT:
                answer["choices"][0]["message"] = answer["choices"][0].pop("delta")
            return web.json_response(answer)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse(answer))
        await resp.write(SSE_DONE)
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/completions", complete)
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_get("/health", health)
    return app


@pytest.mark.parametrize("api", list(Api))
def test_a_streamed_client_gets_the_prefill_engines_first_token(spec: ControllerSpec,
                                                                api: Api) -> None:
    # Two steps: the stub prefills and writes PREFILL_TOKEN; the gateway must stream that
    # token first (it used to make up " x"), then the decode's 4 tokens.
    bodies: list[dict[str, object]] = []

    async def body() -> None:
        async with AsyncExitStack() as stack:
            mixed, mixed_port = await start_site(_stub_engine(bodies), 0)
            stack.push_async_callback(mixed.cleanup)
            core = EngineCore(timing_from_spec(spec), False, 10.0)
            solo, solo_port = await start_site(EngineServer(core, "solo").app(), 0)
            stack.push_async_callback(solo.cleanup)
            gw = Gateway(spec, [f"http://127.0.0.1:{mixed_port}"],
                         [f"http://127.0.0.1:{solo_port}"], time_scale=10.0, seed=3)
            runner, port = await start_site(gw.app(), 0)
            stack.push_async_callback(runner.cleanup)
            s = await stack.enter_async_context(aiohttp.ClientSession())
            path = "/v1/chat/completions" if api is Api.CHAT else "/v1/completions"
            request = ({"messages": [{"role": "user", "content": "a b c"}]} if api is Api.CHAT
                       else {"prompt": "a b c"})
            async with s.post(f"http://127.0.0.1:{port}{path}", json={
                    **request, "max_tokens": 5, "stream": True},
                    headers={"X-Fluidgate-Class": "decode_heavy"}) as r:
                assert r.status == 200
                lines = [ln.decode().strip() async for ln in r.content]
        events = [ln[6:] for ln in lines if ln.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e)["choices"][0] for e in events[:-1]]
        texts = [c["delta"]["content"] if api is Api.CHAT else c["text"] for c in chunks]
        assert texts[0] == PREFILL_TOKEN
        assert "".join(texts[1:]) == " x" * 4  # the decode engine's 4 tokens
        assert bodies[0]["max_tokens"] == 1  # the first step asked for the one token
        assert bodies[0]["stream"] is False  # as vLLM's proxy sends it
    run(body)


class _BrokenCore(EngineCore):
    """An engine whose iterations raise (a CUDA error, say): it fails with its first request
    and answers every later one, and its health check, at once with an error."""

    async def _iterate(self, head: Stream | None, k: int, end: float) -> float:
        raise RuntimeError("CUDA error: unspecified launch failure (test)")


def test_an_engine_that_fails_a_request_is_routed_around(spec: ControllerSpec) -> None:
    # Two mixed engines, one broken, and a solo one; the health check runs only at start
    # (interval 1000 s), so only the gateway's own view of the failed request can take the
    # broken engine out. Ten requests one after another: the first that reaches it fails
    # (502), and every later one is served elsewhere. Before, the broken engine's prefill
    # slot stayed free and drew about half of the requests to an instant failure.
    timing = timing_from_spec(spec)

    async def body() -> None:
        async with AsyncExitStack() as stack:
            urls = []
            for core in (_BrokenCore(timing, True, 10.0), EngineCore(timing, True, 10.0),
                         EngineCore(timing, False, 10.0)):
                runner, port = await start_site(EngineServer(core, str(len(urls))).app(), 0)
                stack.push_async_callback(runner.cleanup)
                urls.append(f"http://127.0.0.1:{port}")
            gw = Gateway(spec, urls[:2], urls[2:], time_scale=10.0, seed=3,
                         health_interval=1000.0)
            runner, port = await start_site(gw.app(), 0)
            stack.push_async_callback(runner.cleanup)
            s = await stack.enter_async_context(aiohttp.ClientSession())
            statuses = []
            for _ in range(10):
                async with s.post(f"http://127.0.0.1:{port}/v1/completions",
                                  json={"prompt": "a b c", "max_tokens": 3},
                                  headers={"X-Fluidgate-Class": "decode_heavy"}) as r:
                    statuses.append(r.status)
                    out = await r.json(content_type=None)
                    if r.status == 502:
                        assert out["error"]["type"] == "engine_failed"
            assert Counter(statuses) == {200: 9, 502: 1}
            assert [b.up for b in gw.backends.all] == [False, True, True]
            assert gw.metrics.engines_down._value.get() == 1
    run(body)


@pytest.mark.parametrize("event", [b"[1, 2]", b"7", b'{"fluidgate": null}',
                                   b'{"fluidgate": 3}'])
def test_a_malformed_prefill_event_is_a_failed_engine(spec: ControllerSpec,
                                                      event: bytes) -> None:
    # A streamed first step whose engine writes an event that is not an object (or whose
    # `fluidgate` part is not one): a 502 engine_failed, the engine marked down, and the
    # request told to the controller as gone; it used to raise in the handler (a 500).
    async def prefill(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + event + b"\n\n")
        await resp.write(SSE_DONE)
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def body() -> None:
        async with AsyncExitStack() as stack:
            app = web.Application()
            app.router.add_post("/v1/completions", prefill)
            app.router.add_get("/health", health)
            engine, engine_port = await start_site(app, 0)
            stack.push_async_callback(engine.cleanup)
            gw = Gateway(spec, [f"http://127.0.0.1:{engine_port}"], [], time_scale=10.0,
                         seed=3, health_interval=1000.0, streamed_prefill=True)
            runner, port = await start_site(gw.app(), 0)
            stack.push_async_callback(runner.cleanup)
            s = await stack.enter_async_context(aiohttp.ClientSession())
            async with s.post(f"http://127.0.0.1:{port}/v1/completions",
                              json={"prompt": "a b c", "max_tokens": 3},
                              headers={"X-Fluidgate-Class": "decode_heavy"}) as r:
                assert r.status == 502
                assert (await r.json())["error"]["type"] == "engine_failed"
            assert [b.up for b in gw.backends.all] == [False]
            assert gw.metrics.engines_down._value.get() == 1
            assert gw.ctl._requests == {}  # nothing left behind in the controller
    run(body)
