"""A real HTTP server on loopback for the load-test tests, on a thread of its own so a
`revopipe loadtest` subprocess (or the generator) can load it while the test waits.
`delay` (seconds) is read per request, so a test can slow the server mid-run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Server:
    url: str = ""
    delay: float = 0.0
    status: int = 200
    hits: int = 0


@contextmanager
def serve(delay: float = 0.0) -> Iterator[Server]:
    server = Server(delay=delay)
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def handle(request: web.Request) -> web.Response:
        server.hits += 1
        if server.delay:
            await asyncio.sleep(server.delay)
        return web.Response(text="ok", status=server.status)

    async def main() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(main())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
