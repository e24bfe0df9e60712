"""The emulated engine: an OpenAI-compatible server whose iterations follow the calibrated τ.

`/v1/completions` and `/v1/chat/completions` (streaming SSE or one JSON answer), `/health`,
`/v1/models`. A mixed engine prefills and decodes; a solo engine only decodes requests that
carry `kv_transfer_params` from a prefill (vLLM's two-step protocol, `handoff.py`) or that
are the decode half of an SGLang pair (`bootstrap.py`), and refuses the rest with a 400, as
a decode-only instance cannot serve them. Client input never
crashes it: a malformed body is a 400 with a JSON error. An iteration that raises fails the
engine (`EngineCore.run`): its requests end with a 500 JSON error or, streamed, an error
event of type `engine_failed` and no `[DONE]`; new ones get the 500; `/health` answers 503.
Every timestamp it reports is in model time (`EngineCore`), so a run at `--time-scale 10`
reads like one at full speed. With `--model` the core is `passes.DecoderCore` (real forward
passes) and the chunks' text is the generated token ids; nothing else a client sees
differs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

from fluidgate.harness.bootstrap import (
    BOOTSTRAP_PATH,
    HALF_HEADER,
    Bootstrap,
    Rooms,
    fetch_first_token,
    parse_bootstrap,
)
from fluidgate.harness.core import EngineCore, Stream
from fluidgate.harness.protocol import (
    MODEL_NAME,
    SSE_DONE,
    Api,
    BadRequest,
    Request,
    Step,
    chunk_payload,
    error_body,
    error_payload,
    parse_request,
    prompt_ids,
    sse,
)
from fluidgate.harness.serve import start_site

ENGINE_FAILED = "engine_failed"  # the error type of a request the engine's failure ended
CORE_KEY = web.AppKey("core", EngineCore)
TASK_KEY = web.AppKey("task", asyncio.Task[None])


def _json_error(message: str, status: int = 400, kind: str = "invalid_request_error"
                ) -> web.Response:
    return web.Response(status=status, text=error_body(message, kind, status),
                        content_type="application/json")


def _engine_failed(error: str) -> web.Response:
    return _json_error(error, 500, ENGINE_FAILED)


def _first_text(stream: Stream) -> str:
    """A prefill-only stream's one token as text: its id from a real pass, else " x"."""
    return f" {stream.ids[0]}" if stream.ids else " x"


def _ids(stream: Stream, start: int, n: int) -> Sequence[int] | None:
    """The ids of `n` tokens from the `start`-th, when real passes generated ids (else None)."""
    return stream.ids[start:start + n] if stream.ids else None


class EngineServer:
    """The HTTP face of one `EngineCore`; `app()` builds the aiohttp application."""

    def __init__(self, core: EngineCore, engine_id: str, bootstrap_port: int | None = None
                 ) -> None:
        self.core = core
        self.engine_id = engine_id
        self.bootstrap_port = bootstrap_port  # SGLang's KV bootstrap port, if one of its own
        self.rooms = Rooms()
        self._ids = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._bootstrap_site: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app[CORE_KEY] = self.core
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get(BOOTSTRAP_PATH, self.rooms.handshake)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        app[TASK_KEY] = asyncio.create_task(self.core.run())
        self._session = aiohttp.ClientSession()  # a decode half's handshake
        if self.bootstrap_port is not None:  # SGLang's bootstrap listens on a port of its own
            boot = web.Application()
            boot.router.add_get(BOOTSTRAP_PATH, self.rooms.handshake)
            self._bootstrap_site, _ = await start_site(boot, self.bootstrap_port)

    async def _stop(self, app: web.Application) -> None:
        task = app[TASK_KEY]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self._bootstrap_site is not None:
            await self._bootstrap_site.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _health(self, request: web.Request) -> web.Response:
        if self.core.failure is not None:
            return web.json_response({"status": "failed", "error": self.core.failure},
                                     status=503)
        p, w, r = self.core.load
        return web.json_response({"status": "ok", "role": "mixed" if self.core.mixed else "solo",
                                  "model_time": self.core.now(), "prefills": p,
                                  "decodes_waiting": w, "decodes_running": r,
                                  "iterations": self.core.iterations})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": MODEL_NAME, "object": "model", "owned_by": "fluidgate"}]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, Api.COMPLETIONS)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, Api.CHAT)

    async def _serve(self, request: web.Request, api: Api) -> web.StreamResponse:
        try:
            req = parse_request(await request.read(), api)
        except BadRequest as exc:
            return _json_error(str(exc))
        except web.HTTPRequestEntityTooLarge:
            return _json_error("request body too large", 413)
        try:
            boot = parse_bootstrap(req.body)
        except BadRequest as exc:
            return _json_error(str(exc))
        if self.core.failure is not None:
            if boot is not None and self._prefill_half(request):
                self.rooms.prefilled(boot.room, None)  # its decode half must not wait for it
            return _engine_failed(self.core.failure)
        if boot is not None:
            return await self._paired(request, req, boot)
        if req.step is not Step.DECODE and not self.core.mixed:
            return _json_error("this engine is decode-only (role solo): send the prefill to a "
                               "mixed engine and the decode here with its kv_transfer_params")
        stream = Stream(
            prompt_left=0 if req.step is Step.DECODE else req.prompt_tokens,
            tokens_left=0 if req.step is Step.PREFILL else req.max_tokens,
            prefill_only=req.step is Step.PREFILL, prompt_ids=prompt_ids(req))
        rid = f"cmpl-{self.engine_id}-{next(self._ids)}"
        self.core.submit(stream)
        return await self._answer(request, req, stream, rid)

    def _prefill_half(self, request: web.Request) -> bool:
        """Whether this engine plays a pair's prefill half (a mixed one, unless the gateway
        placed the decode here)."""
        return self.core.mixed and request.headers.get(HALF_HEADER) != "decode"

    async def _paired(self, request: web.Request, req: Request, boot: Bootstrap
                      ) -> web.StreamResponse:
        """One half of an SGLang pair (`bootstrap.py`): the prefill half on a mixed engine
        (after its decode half's handshake), else the decode half, which streams the
        prefill's first token and decodes the rest here."""
        rid = f"cmpl-{self.engine_id}-{next(self._ids)}"
        if self._prefill_half(request):
            if not await self.rooms.wait_for_decode(boot.room):
                return _json_error(f"no decode server joined bootstrap room {boot.room}", 504,
                                   ENGINE_FAILED)
            stream = Stream(prompt_left=req.prompt_tokens, tokens_left=0, prefill_only=True,
                            prompt_ids=prompt_ids(req))
            self.core.submit(stream)
            try:
                return await self._answer(request, req, stream, rid)
            finally:
                self.rooms.prefilled(boot.room, _first_text(stream) if stream.done and
                                     stream.error is None else None)
        assert self._session is not None
        head = await fetch_first_token(self._session, boot)
        if head is None:  # 424: the prefill engine failed, not this one
            return _json_error(f"the prefill of bootstrap room {boot.room} did not finish",
                               424, ENGINE_FAILED)
        stream = Stream(prompt_left=0, tokens_left=req.max_tokens - 1)
        if stream.tokens_left > 0:
            self.core.submit(stream)
        else:
            stream.done = True
            stream.ready.set()
        return await self._answer(request, req, stream, rid, head)

    async def _answer(self, request: web.Request, req: Request, stream: Stream, rid: str,
                      head: str | None = None) -> web.StreamResponse:
        try:
            if req.stream:
                return await self._stream(request, req, stream, rid, head)
            return await self._whole(req, stream, rid, head)
        finally:
            if not stream.done:
                stream.aborted = True  # the client went away: free its slot

    def _kv_params(self, req: Request, rid: str) -> dict[str, Any] | None:
        if req.step is not Step.PREFILL:
            return None
        return {"do_remote_prefill": True, "do_remote_decode": False,
                "remote_engine_id": self.engine_id, "remote_request_id": rid,
                "remote_block_ids": [], "prompt_tokens": req.prompt_tokens}

    def _usage(self, req: Request, tokens: int) -> dict[str, int]:
        return {"prompt_tokens": req.prompt_tokens, "completion_tokens": tokens,
                "total_tokens": req.prompt_tokens + tokens}

    async def _whole(self, req: Request, stream: Stream, rid: str, head: str | None = None
                     ) -> web.Response:
        while not (stream.done or stream.error):
            await stream.ready.wait()
            stream.take()
        if stream.error is not None:
            return _engine_failed(stream.error)
        tokens = stream.produced + (head is not None)
        extra: dict[str, Any] = {"usage": self._usage(req, tokens)}
        kv = self._kv_params(req, rid)
        if kv is not None:
            extra["kv_transfer_params"] = kv
        extra["fluidgate"] = {"tokens": tokens, "start_time": stream.start_time,
                              "finish_time": stream.finish_time}
        payload = chunk_payload(req.api, rid, stream.produced, "length", extra,
                                stream.ids or None)
        if head is not None:  # the prefill's token, then this engine's
            choice = payload["choices"][0]
            part, key = (choice["delta"], "content") if req.api is Api.CHAT else (choice, "text")
            part[key] = head + part[key]
        if req.api is Api.CHAT:
            payload["object"] = "chat.completion"
            payload["choices"][0]["message"] = {"role": "assistant",
                                                "content": payload["choices"][0].pop("delta")
                                                ["content"]}
        return web.Response(text=json.dumps(payload), content_type="application/json")

    async def _stream(self, request: web.Request, req: Request, stream: Stream, rid: str,
                      head: str | None = None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        announced = False
        sent = 0  # tokens written
        if head is not None:  # a decode half: the prefill's token comes first
            await resp.write(sse(chunk_payload(req.api, rid, 1, None, text=head)))
        while True:
            await stream.ready.wait()
            chunks = stream.take()  # the engine may have run several iterations meanwhile
            if stream.handoff >= 0 and not announced:
                announced = True  # before the end it announces, however late this wakes
                await resp.write(sse({"id": rid, "object": "text_completion", "choices": [],
                                      "fluidgate": {"tokens": 0,
                                                    "prefill_ends": stream.handoff}}))
            for i, n in enumerate(chunks):
                extra: dict[str, Any] | None = None
                last = stream.done and i == len(chunks) - 1
                if last:
                    extra = {"usage": self._usage(req, stream.produced + (head is not None))}
                    kv = self._kv_params(req, rid)
                    if kv is not None:
                        extra["kv_transfer_params"] = kv
                await resp.write(sse(chunk_payload(req.api, rid, n, "length" if last else None,
                                                   extra, _ids(stream, sent, n))))
                sent += n
            if stream.error is not None:  # no [DONE]: the answer is incomplete
                await resp.write(sse(error_payload(stream.error, ENGINE_FAILED, 500)))
                break
            if stream.done:
                await resp.write(SSE_DONE)
                break
        await resp.write_eof()
        return resp
