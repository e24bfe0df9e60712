"""The gateway: the runtime gate and router in front of OpenAI-compatible engines.

Each request is classified as the spec says (`controllers/classify.py`: the class header,
else rules on model, header or prompt length, else the nearest class or a 400), queued per
class in the runtime `Controller`, and admitted when a mixed engine's
prefill slot frees and the gate picks its class. With vLLM's disaggregated protocol (the
default, `handoff.py`) its prefill runs on that engine as the first step; the router then
places its decode on a solo or mixed engine (or buffers it until a slot frees) and the
second step streams the answer back. With SGLang's, the router places the decode at once and
both halves go out together, paired by a bootstrap room (`_serve_pair`).

Outcomes, each a status the client can tell apart: 200 served; 429 `abandoned` when the
request's patience (`X-Fluidgate-Patience`, model seconds, else a draw from the class's
mean) runs out while it waits for prefill or for a decode slot (an in-stream error event
of type `abandoned` once the prefill's token has been streamed); 400 for a malformed body or
an unknown class and 503 when no mixed engine is up (both `rejected`); 502 `engine_failed`
when its engine fails under it (a stream already started just ends without `[DONE]`).
A failed request is told to the controller as having left, so its counts stay true. A
client that disconnects cancels its handler (`serve.start_site`); whatever stage it is in,
`finally` blocks give back its queue entry, prefill slot or decode slot and count it once,
as abandoned. A health check every `health_interval` wall seconds marks engines down and
up again; an engine that fails under a request (no answer, a 5xx, an error event or a cut
stream) is marked down at once, so a failed engine that answers every request with an
instant 500 does not draw requests to itself until the next check.
Every time it reports is in model seconds (wall seconds × `time_scale`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from aiohttp import web

from fluidgate.controllers.classify import Classifier, Unclassified
from fluidgate.controllers.runtime import Controller, Placement, Pool
from fluidgate.controllers.spec import ControllerSpec
from fluidgate.harness.backends import Backend, Backends
from fluidgate.harness.bootstrap import HALF_HEADER, ROOM_LIMIT
from fluidgate.harness.gateway_metrics import GatewayMetrics, Outcome
from fluidgate.harness.handoff import Handoff, sglang_body, vllm_prefill_body
from fluidgate.harness.protocol import (
    Api,
    BadRequest,
    Request,
    choice_text,
    chunk_payload,
    error_body,
    error_payload,
    parse_request,
    sse,
)

PATIENCE_HEADER = "X-Fluidgate-Patience"


@dataclass(frozen=True, slots=True)
class _Prefilled:
    """What the first step returned: where the KV cache lives, and the token the prefill
    generated as its engine wrote it (a two-step stream's first token)."""

    kv: dict[str, Any]
    text: str


class _Failed(Exception):
    """The engine serving a request failed under it."""


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.Response(status=status, text=error_body(message, kind, status),
                        content_type="application/json")


class Gateway:
    def __init__(self, spec: ControllerSpec, mixed: list[str], solo: list[str],
                 time_scale: float = 1.0, seed: int = 0, health_interval: float = 0.5,
                 streamed_prefill: bool = False, handoff: Handoff = Handoff.VLLM,
                 bootstrap_ports: list[int] | None = None) -> None:
        if streamed_prefill and handoff is not Handoff.VLLM:
            raise ValueError("a streamed prefill is an extension of the vllm handoff only")
        self.spec = spec
        self.streamed_prefill = streamed_prefill  # the emulator's prefill_ends extension
        self.handoff = handoff
        self.scale = time_scale
        self.health_interval = health_interval
        self._rng = np.random.default_rng(seed)
        self.ctl = Controller.from_spec(spec, rng=np.random.default_rng(seed + 1))
        self.classifier = Classifier(spec)
        self.backends = Backends(mixed, solo, spec.cluster.max_batch, self._rng)
        ports = bootstrap_ports or []
        if len(ports) not in (0, 1, len(mixed)):
            raise ValueError(f"{len(ports)} bootstrap ports for {len(mixed)} mixed engines: "
                             "give one for all, or one per mixed engine")
        for i, b in enumerate(x for x in self.backends.all if x.pool is Pool.MIXED):
            # SGLang: where its prefill server listens for KV bootstrap (an emulated
            # engine: on its own HTTP port unless it was given one)
            b.bootstrap_port = (ports[0] if len(ports) == 1 else ports[i] if ports
                                else urlsplit(b.url).port or 80)
        self.metrics = GatewayMetrics(spec)
        self._prefill_wait: dict[int, asyncio.Future[Backend]] = {}
        self._decode_wait: dict[int, asyncio.Future[Backend]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._health: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", self._alive)
        app.router.add_get("/metrics", self._metrics)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        self._health = asyncio.create_task(self._check_health())

    async def _stop(self, app: web.Application) -> None:
        if self._health is not None:
            self._health.cancel()
            await asyncio.gather(self._health, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- health ------------------------------------------------------------------------

    async def _check_health(self) -> None:
        while True:
            await asyncio.gather(*(self._probe(b) for b in self.backends.all))
            self._dispatch_prefills()
            for pool in Pool:
                self._dispatch_decodes(pool)
            await asyncio.sleep(self.health_interval)

    async def _probe(self, b: Backend) -> None:
        assert self._session is not None
        try:
            async with self._session.get(b.url + "/health",
                                         timeout=aiohttp.ClientTimeout(total=2)) as r:
                ok = r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if b.up and not ok:
            self._mark_down(b)
        elif ok and not b.up:
            b.up, b.prefilling, b.decoding = True, False, 0

    def _mark_down(self, b: Backend) -> None:
        """Leave `b` out until a health check finds it back (counted once per time down)."""
        if b.up:
            b.up = False
            self.metrics.engines_down.inc()

    async def _alive(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "engines_up": sum(
            b.up for b in self.backends.all), "engines": len(self.backends.all)})

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(self.ctl.stats(), self.backends)
        return web.Response(body=body, headers={"Content-Type": content_type})

    # -- scheduling --------------------------------------------------------------------

    def _dispatch_prefills(self) -> None:
        while (engine := self.backends.prefill_engine()) is not None:
            adm = self.ctl.next_prefill()
            if adm is None:
                return
            engine.prefilling = True
            self._prefill_wait.pop(adm.ticket).set_result(engine)

    def _dispatch_decodes(self, pool: Pool) -> None:
        started = False
        while (engine := self.backends.decode_engine(pool)) is not None:
            adm = self.ctl.next_decode(pool)
            if adm is None:
                break
            engine.decoding += 1
            started = True
            self._decode_wait.pop(adm.ticket).set_result(engine)
        if started:  # the gate may hold prefill slots idle while decodes wait: ask again
            self._dispatch_prefills()

    def _left(self, ticket: int) -> None:
        """The controller's `on_abandon`, then the gate is asked again (it may have held a
        slot for the decodes this one was waiting behind)."""
        self.ctl.on_abandon(ticket)
        self._dispatch_prefills()

    @staticmethod
    def _register(waiters: dict[int, asyncio.Future[Backend]], ticket: int
                  ) -> asyncio.Future[Backend]:
        fut: asyncio.Future[Backend] = asyncio.get_running_loop().create_future()
        waiters[ticket] = fut
        return fut

    @staticmethod
    async def _wait(fut: asyncio.Future[Backend], waiters: dict[int, asyncio.Future[Backend]],
                    ticket: int, deadline: float, give_back: Callable[[Backend], None]
                    ) -> Backend | None:
        """The engine the dispatcher hands this ticket, or None when patience runs out.
        Cancelled after the dispatcher took a slot for it, the slot goes to `give_back`."""
        timeout = deadline - asyncio.get_running_loop().time()
        try:
            if timeout > 0 and not fut.done():
                await asyncio.wait({fut}, timeout=timeout)
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                give_back(fut.result())
            raise
        if fut.done():
            return fut.result()
        waiters.pop(ticket, None)
        fut.cancel()
        return None

    # -- requests ----------------------------------------------------------------------

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, Api.COMPLETIONS, "/v1/completions")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, Api.CHAT, "/v1/chat/completions")

    def _classify(self, request: web.Request, req: Request) -> int:
        model = req.body.get("model")
        if model is not None and not isinstance(model, str):
            raise BadRequest("model must be a string")
        try:
            return self.classifier.classify(
                req.prompt_tokens, req.max_tokens if "max_tokens" in req.body else None,
                model, request.headers.get)
        except Unclassified as exc:
            raise BadRequest(str(exc)) from None

    def _patience(self, request: web.Request, cls: int) -> float:
        """Model seconds this request waits in queues before it leaves."""
        given = request.headers.get(PATIENCE_HEADER)
        if given is not None:
            try:
                value = float(given)
            except ValueError:
                raise BadRequest(f"{PATIENCE_HEADER} must be a number of seconds") from None
            if not value > 0:
                raise BadRequest(f"{PATIENCE_HEADER} must be positive")
            return value
        mean = self.spec.classes[cls].patience
        return float("inf") if mean is None else float(self._rng.exponential(mean))

    async def _serve(self, request: web.Request, api: Api, path: str) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        try:
            req = parse_request(await request.read(), api)
            cls = self._classify(request, req)
            patience = self._patience(request, cls)
        except BadRequest as exc:
            self.metrics.outcome(None, Outcome.REJECTED)
            return _error(400, str(exc), "invalid_request_error")
        except web.HTTPRequestEntityTooLarge:
            self.metrics.outcome(None, Outcome.REJECTED)
            return _error(413, "request body too large", "invalid_request_error")
        if not self.backends.any_prefill_up():
            self.metrics.outcome(cls, Outcome.REJECTED)
            return _error(503, "no mixed engine is up", "unavailable")
        deadline = arrived + patience / self.scale
        ticket = self.ctl.on_arrival(cls)
        live = True  # the controller still holds the ticket
        try:
            fut = self._register(self._prefill_wait, ticket)
            self._dispatch_prefills()
            engine = await self._wait(fut, self._prefill_wait, ticket, deadline,
                                      self._free_prefill)
            if engine is None:
                return self._abandon(ticket, cls, "prefill")
            if self.handoff is Handoff.SGLANG:
                live = False  # from here the pair's own bookkeeping
                return await self._serve_pair(request, engine, path, req, ticket, cls,
                                              arrived, deadline)
            pre = await self._prefill(engine, path, req, ticket)
            if pre is None:
                live = False
                self._left(ticket)
                self.metrics.outcome(cls, Outcome.FAILED)
                return _error(502, "the prefill engine failed", "engine_failed")
            early = await self._first_token(request, req, ticket, pre.text)
            engine_d = await self._decode_engine(ticket, deadline)
            if engine_d is None:
                if early is not None:  # the status is sent: say it in the stream
                    await self._relay(early[0], sse(error_payload(
                        "patience ran out waiting for a decode slot", "abandoned", 429)))
                    await self._relay(early[0], b"")
                    return early[0]
                return self._abandon(ticket, cls, "a decode slot")
            live = False
            return await self._decode(request, engine_d, path, req,
                                      dict(req.body, kv_transfer_params=pre.kv), ticket, cls,
                                      arrived, early)
        finally:
            if live:  # the client went away while it waited: it left
                self._prefill_wait.pop(ticket, None)
                self._decode_wait.pop(ticket, None)
                self._left(ticket)
                self.metrics.outcome(cls, Outcome.ABANDONED)

    async def _decode_engine(self, ticket: int, deadline: float) -> Backend | None:
        """The router's placement of this ticket's decode: an engine with its slot taken,
        at once or once one frees; None when patience runs out first."""
        where = self.ctl.place_decode(ticket, self.backends.free_decode(Pool.SOLO),
                                      self.backends.free_decode(Pool.MIXED))
        if where.waits:
            fut = self._register(self._decode_wait, ticket)
            return await self._wait(fut, self._decode_wait, ticket, deadline, self._release)
        engine_d = self.backends.decode_engine(Pool(where.value))
        assert engine_d is not None and where is not Placement.LOCAL
        engine_d.decoding += 1
        return engine_d

    async def _serve_pair(self, request: web.Request, engine: Backend, path: str,
                          req: Request, ticket: int, cls: int, arrived: float,
                          deadline: float) -> web.StreamResponse:
        """SGLang's handoff (`handoff.py`): the router places the decode as the prefill
        starts, since SGLang pairs the two servers when it sends; both halves go at once
        with one bootstrap room, the client is answered from the decode engine, and the
        prefill engine's slot is held until its half answers (or the pair ends)."""
        half: asyncio.Task[None] | None = None
        live = True
        try:
            engine_d = await self._decode_engine(ticket, deadline)
            if engine_d is None:
                return self._abandon(ticket, cls, "a decode slot")
            room = int(self._rng.integers(ROOM_LIMIT))
            host = urlsplit(engine.url).hostname or "127.0.0.1"
            body = sglang_body(req.body, host, engine.bootstrap_port, room)
            half = asyncio.create_task(self._prefill_half(engine, path, body))
            live = False
            return await self._decode(request, engine_d, path, req, body, ticket, cls,
                                      arrived, None, {HALF_HEADER: "decode"})
        finally:
            if half is None:
                self._free_prefill(engine)
            elif not half.done():
                half.cancel()  # its `finally` frees the prefill slot
            if live:  # patience ran out, or the client went away, waiting for a decode slot
                self._decode_wait.pop(ticket, None)
                self._left(ticket)
                self.metrics.outcome(cls, Outcome.ABANDONED)

    async def _prefill_half(self, engine: Backend, path: str, body: dict[str, Any]) -> None:
        """SGLang's prefill half: sent, its answer read and dropped, the slot freed."""
        assert self._session is not None
        try:
            async with self._session.post(engine.url + path, json=body) as r:
                await r.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            self._mark_down(engine)
        finally:
            self._free_prefill(engine)

    def _abandon(self, ticket: int, cls: int, what: str) -> web.Response:
        # `live` stays true: the caller's finally tells the controller and counts it
        return _error(429, f"patience ran out waiting for {what}", "abandoned")

    async def _prefill(self, engine: Backend, path: str, req: Request, ticket: int
                       ) -> _Prefilled | None:
        """The first step on `engine` (`handoff.py`): its kv_transfer_params and token, or
        None if it failed.

        Not streamed, as vLLM's proxy sends it, unless `streamed_prefill` (an emulator
        extension): then an engine that announces the prefill's end (`prefill_ends`) frees
        its prefill slot early and the next prefill is on its way while this one finishes.
        The slot is freed once: after an early free it belongs to the next prefill."""
        assert self._session is not None
        body = vllm_prefill_body(req.body, stream=self.streamed_prefill)
        kv: Any = None
        text = ""
        held = [True]
        refused = False  # a 4xx: the engine is up but will not take this body
        try:
            async with self._session.post(engine.url + path, json=body) as r:
                refused = 400 <= r.status < 500
                if r.status == 200 and not self.streamed_prefill:
                    answer = json.loads(await r.read())
                    if isinstance(answer, dict):
                        kv, text = answer.get("kv_transfer_params"), choice_text(answer)
                elif r.status == 200:
                    kv, text = await self._read_prefill_stream(engine, r, held, ticket)
        except (aiohttp.ClientError, ValueError, TimeoutError, OSError):
            kv = None
            self._mark_down(engine)
        else:  # an error status or event, or no KV parameters: it failed under the request
            if not isinstance(kv, dict) and not refused:
                self._mark_down(engine)  # before its slot frees, or the next prefill goes there
        finally:
            if held[0]:
                self._free_prefill(engine)
        return _Prefilled(kv, text) if isinstance(kv, dict) else None

    async def _read_prefill_stream(self, engine: Backend, r: aiohttp.ClientResponse,
                                   held: list[bool], ticket: int) -> tuple[Any, str]:
        """A streamed first step's kv_transfer_params and text; frees the prefill slot at
        the announced end (and clears `held[0]`), where the prefill stops counting as
        prefilling for the gate (`prefill_ending`), as at its end."""
        kv: Any = None
        text = ""
        async for raw in r.content:
            line = raw.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            event = json.loads(line[6:])
            ours = event.get("fluidgate", {}) if isinstance(event, dict) else None
            if not isinstance(ours, dict):  # caught by `_prefill`: a failed engine response
                raise ValueError("an event that is not a JSON object")
            if held[0] and "prefill_ends" in ours:
                held[0] = False
                self.ctl.prefill_ending(ticket)
                self._free_prefill(engine)
            kv = event.get("kv_transfer_params", kv)
            text += choice_text(event)
        return kv, text

    def _free_prefill(self, engine: Backend) -> None:
        if engine.prefilling:
            engine.prefilling = False
            self._dispatch_prefills()

    async def _first_token(self, request: web.Request, req: Request, ticket: int, text: str
                           ) -> tuple[web.StreamResponse, float] | None:
        """Stream the prefill's token (`text`, as its engine wrote it) at once (a streamed
        request of 2+ tokens), so TTFT is the end of the prefill, as the simulator and the
        LP count it; the decode engine then generates the other `max_tokens − 1`. None when
        nothing was sent."""
        if not req.stream or req.max_tokens < 2:
            return None
        resp = await self._open_stream(request)
        if resp is None:
            return None
        await self._relay(resp, sse(chunk_payload(req.api, f"gw-{ticket}", 1, None,
                                                  text=text)))
        return resp, asyncio.get_running_loop().time()

    @staticmethod
    async def _open_stream(request: web.Request) -> web.StreamResponse | None:
        """Send the headers of an event stream; None if the client has gone."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        try:
            await resp.prepare(request)
        except (ConnectionError, RuntimeError):
            return None
        return resp

    async def _decode(self, request: web.Request, engine: Backend, path: str, req: Request,
                      body: dict[str, Any], ticket: int, cls: int, arrived: float,
                      early: tuple[web.StreamResponse, float] | None,
                      headers: dict[str, str] | None = None) -> web.StreamResponse:
        """The decode step (`body`) on `engine`, relayed to the client; the controller is
        told how it ended (finished, failed, or left when the client went away)."""
        assert self._session is not None
        loop = asyncio.get_running_loop()
        body = dict(body)
        resp: web.StreamResponse | None = None
        first = last = 0.0
        if early is not None:
            resp, first = early
            body["max_tokens"] = req.max_tokens - 1
        outcome = Outcome.FAILED
        try:
            async with self._session.post(engine.url + path, json=body,
                                          headers=headers) as r:
                if r.status != 200:
                    if r.status >= 500:
                        self._mark_down(engine)
                    raise _Failed
                if not req.stream:
                    data = await r.read()
                    first = last = loop.time()
                    resp = web.Response(body=data, content_type="application/json")
                    outcome = Outcome.SERVED
                else:
                    if resp is None and (resp := await self._open_stream(request)) is None:
                        outcome = Outcome.ABANDONED  # the client went away
                        raise _Failed
                    tail = b""
                    async for data in r.content.iter_any():
                        last = loop.time()
                        first = first or last
                        tail = (tail + data)[-32:]
                        if not await self._relay(resp, data):
                            outcome = Outcome.ABANDONED  # the client went away
                            break
                    else:
                        if not tail.endswith(b"data: [DONE]\n\n"):
                            self._mark_down(engine)  # it failed under the request
                            raise _Failed
                        outcome = Outcome.SERVED
                        await self._relay(resp, b"")
        except asyncio.CancelledError:
            outcome = Outcome.ABANDONED  # the client went away
            raise
        except (aiohttp.ClientError, TimeoutError, OSError):
            self._mark_down(engine)
        except _Failed:
            pass
        finally:
            self._release(engine)
            self.metrics.outcome(cls, outcome)
            if outcome is Outcome.SERVED:
                self.ctl.on_finish(ticket)
                self.metrics.latency(cls, (first - arrived) * self.scale,
                                     (last - first) * self.scale / max(req.max_tokens - 1, 1)
                                     if req.stream else None)
            else:
                self._left(ticket)
        if resp is None or (outcome is Outcome.FAILED and not resp.prepared):
            return _error(502, "the decode engine failed", "engine_failed")
        return resp

    @staticmethod
    async def _relay(resp: web.StreamResponse, data: bytes) -> bool:
        """Write to the client (b"": end the stream); False if the client has gone."""
        try:
            if data:
                await resp.write(data)
            else:
                await resp.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionError, RuntimeError):
            return False
        return True

    def _release(self, engine: Backend) -> None:
        engine.decoding = max(engine.decoding - 1, 0)
        self._dispatch_decodes(engine.pool)

