"""Running an aiohttp application on loopback until told to stop, for the harness commands.

Port 0 asks the kernel for a free port; the port actually bound is announced on standard
output as one `listening http://127.0.0.1:PORT` line, which is how `fluidgate harness` learns
where its children listen. A port that is taken is an error in words, never a traceback.

A handler is cancelled when its client disconnects (aiohttp's `handler_cancellation`), so
a request whose client has gone leaves the gateway's queue at once instead of taking a
prefill slot later, and an engine stops a stream nobody reads; both release what the
request held in `finally` blocks.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

HOST = "127.0.0.1"
LISTENING = "listening"


class PortError(OSError):
    """The port cannot be bound; `str()` says which and why."""


async def start_site(app: web.Application, port: int, host: str = HOST
                     ) -> tuple[web.AppRunner, int]:
    """Start `app` on `host:port` (0: a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=False)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise PortError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = port
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            bound = int(addr[1])
    return runner, bound


async def _serve(app: web.Application, port: int) -> None:
    runner, bound = await start_site(app, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"{LISTENING} http://{HOST}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve_forever(app: web.Application, port: int) -> None:
    """Serve until SIGINT/SIGTERM; `PortError` if the port cannot be bound."""
    if not 0 <= port <= 65535:
        raise PortError(f"port {port} is outside 0..65535")
    try:
        asyncio.run(_serve(app, port))
    except KeyboardInterrupt:  # a second Ctrl-C while cleaning up
        sys.exit(130)
