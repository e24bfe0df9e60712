"""SGLang's bootstrap room, as the emulated engines play it.

In SGLang PD disaggregation (0.5.x, `python/sglang/srt/disaggregation/prefill.py` and
`decode.py`) the router sends the same request to a prefill server and a decode server at
once, with `bootstrap_host`, `bootstrap_port` and `bootstrap_room`. The decode server
connects to the prefill server's bootstrap port and preallocates the KV cache; only then
does the prefill server schedule the prefill (its bootstrap queue holds the request until
that handshake), writes the KV cache and the first token over, and the decode server streams
every token, the first one included. A router that sent the two halves one after the other,
waiting for the prefill's answer, would wait forever.

The emulator keeps that order of events with an HTTP endpoint on the prefill engine,
`GET /fluidgate/bootstrap/{room}`: the decode half calls it (the handshake), which releases
the prefill half, and it answers when that prefill ends, with the first token's text. A
mixed emulated engine plays the prefill half (as SGLang's `--disaggregation-mode prefill`)
unless the request carries `X-Fluidgate-Half: decode`, which only a gateway placing a decode
on a mixed engine sends: unlike SGLang's prefill servers, an emulated mixed engine can also
decode, as the plan assumes; a solo engine always plays the decode half.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web

from fluidgate.harness.protocol import BadRequest

ROOM_LIMIT = 1 << 63  # SGLang's router draws rooms from 0 … 2⁶³ − 1
HALF_HEADER = "X-Fluidgate-Half"
BOOTSTRAP_PATH = "/fluidgate/bootstrap/{room}"
TIMEOUT_S = 300.0  # wall seconds either half waits for the other (SGLang's default is 300)


class Bootstrap(NamedTuple):
    host: str
    port: int
    room: int


def parse_bootstrap(body: dict[str, Any]) -> Bootstrap | None:
    """The request's bootstrap fields (all three, or none), checked; `BadRequest` if odd."""
    present = [k in body for k in ("bootstrap_host", "bootstrap_port", "bootstrap_room")]
    if not any(present):
        return None
    if not all(present):
        raise BadRequest("bootstrap_host, bootstrap_port and bootstrap_room go together")
    host, port, room = body["bootstrap_host"], body["bootstrap_port"], body["bootstrap_room"]
    if not isinstance(host, str) or not host:
        raise BadRequest("bootstrap_host must be a host name")
    if type(port) is not int or not 1 <= port <= 65535:
        raise BadRequest("bootstrap_port must be a port number")
    if type(room) is not int or not 0 <= room < ROOM_LIMIT:
        raise BadRequest(f"bootstrap_room must be an integer from 0 to {ROOM_LIMIT - 1}")
    if "kv_transfer_params" in body:
        raise BadRequest("a request has kv_transfer_params or bootstrap fields, not both")
    return Bootstrap(host, port, room)


@dataclass(eq=False)
class _Room:
    claimed: asyncio.Event = field(default_factory=asyncio.Event)  # the decode half came
    first: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Rooms:
    """The prefill side's rooms: the handshake, then the prefill's first token."""

    def __init__(self) -> None:
        self._rooms: dict[int, _Room] = {}

    def _get(self, room: int) -> _Room:
        return self._rooms.setdefault(room, _Room())

    async def wait_for_decode(self, room: int) -> bool:
        """The prefill half: wait for its decode half's handshake; False on time-out."""
        try:
            await asyncio.wait_for(self._get(room).claimed.wait(), TIMEOUT_S)
        except TimeoutError:
            self._rooms.pop(room, None)
            return False
        return True

    def prefilled(self, room: int, text: str | None) -> None:
        """The prefill ended (`text`: its first token) or failed (None), before or after
        its decode half's handshake."""
        r = self._get(room)
        if not r.first.done():
            if text is None:
                r.first.set_exception(ConnectionError("the prefill failed"))
            else:
                r.first.set_result(text)

    async def handshake(self, request: web.Request) -> web.Response:
        """`GET /fluidgate/bootstrap/{room}`: the first token's text once the prefill ends."""
        try:
            room = int(request.match_info["room"])
        except ValueError:
            return web.json_response({"error": "not a room"}, status=400)
        r = self._get(room)
        r.claimed.set()
        try:
            text = await asyncio.wait_for(asyncio.shield(r.first), TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            return web.json_response({"error": "the prefill did not finish"}, status=504)
        finally:
            if r.first.done():
                self._rooms.pop(room, None)
        return web.json_response({"text": text})


async def fetch_first_token(session: aiohttp.ClientSession, b: Bootstrap) -> str | None:
    """The decode half: hand-shake with the prefill engine and wait for the prefill's first
    token; None if it cannot be reached or the prefill failed."""
    url = f"http://{b.host}:{b.port}" + BOOTSTRAP_PATH.format(room=b.room)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S + 5)) as r:
            if r.status != 200:
                return None
            got = await r.json()
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError):
        return None
    text = got.get("text") if isinstance(got, dict) else None
    return text if isinstance(text, str) else None
