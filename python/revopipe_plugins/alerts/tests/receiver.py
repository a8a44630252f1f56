"""A real HTTP receiver on loopback for the channel tests (aiohttp, a free port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(method: str, path: str, handle: Handler, port: int = 0) -> AsyncIterator[str]:
    """Routes `method path` to `handle` while open; yields the base URL
    `http://127.0.0.1:<port>` (port 0: a free one)."""
    app = web.Application()
    app.router.add_route(method, path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
