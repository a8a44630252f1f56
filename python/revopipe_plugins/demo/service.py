"""The sample web service `revopipe demo` watches: a small Starlette app with a fast, a
slow and a sometimes-failing route, instrumented with `RevopipeMiddleware`, served by
uvicorn on the caller's event loop.

Its routes give each dashboard widget something to show: per-route throughput and
latency percentiles that differ by an order of magnitude (`/api/items/{item_id}` vs
`/api/search`), and a steady share of 5xx (`/api/checkout`) and 4xx (unknown items) for the
error-rate widget and the default error-rate alert rule.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Generator

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from revopipe.instrument.asgi import RevopipeMiddleware

__all__ = ["ROUTES", "SampleService", "build_app"]

ROUTES: dict[str, float] = {
    "/": 1.0,
    "/api/items/{item_id}": 5.0,
    "/api/search": 2.0,
    "/api/checkout": 2.0,
}
"""Route template -> its weight in the demo's load mix."""

CHECKOUT_FAILURE_RATE = 0.15
MISSING_ITEM_ABOVE = 900


def build_app(*, seed: int | None = None) -> RevopipeMiddleware:
    """The instrumented ASGI app. `seed` makes the latencies and failures repeatable."""
    rng = random.Random(seed)

    async def index(request: Request) -> Response:
        return PlainTextResponse("revopipe demo service\n")

    async def item(request: Request) -> Response:
        item_id = int(request.path_params["item_id"])
        if item_id > MISSING_ITEM_ABOVE:
            return JSONResponse({"error": f"no item {item_id}"}, status_code=404)
        return JSONResponse({"id": item_id, "name": f"item {item_id}", "price": item_id * 1.5})

    async def search(request: Request) -> Response:
        # Lognormal: mostly tens of milliseconds with a long tail, as real searches go, so
        # p50 and p99 of this route sit far apart.
        await anyio.sleep(min(rng.lognormvariate(-3.2, 0.6), 1.0))
        return JSONResponse({"query": request.query_params.get("q", ""), "hits": []})

    async def checkout(request: Request) -> Response:
        await anyio.sleep(rng.uniform(0.005, 0.03))
        if rng.random() < CHECKOUT_FAILURE_RATE:
            return JSONResponse({"error": "payment backend unavailable"}, status_code=503)
        return JSONResponse({"order": rng.randrange(1 << 30)}, status_code=201)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/items/{item_id:int}", item),
            Route("/api/search", search),
            Route("/api/checkout", checkout, methods=["GET", "POST"]),
        ]
    )
    return RevopipeMiddleware(app)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The demo owns SIGINT/SIGTERM (they drain the pipeline first, then this server);
        # uvicorn's own handlers would swallow the signal and re-raise it on exit.
        yield


class SampleService:
    """The sample service on 127.0.0.1 at a free port, bound at construction (so its URL is
    known before the pipeline's config is built), served once `serve()` runs."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, seed: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise OSError(
                f"demo service: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "pick another port"
            ) from None
        self.sock.listen(1024)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(seed=seed),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(self) -> None:
        """Serve until `stop()`; returns once open connections are closed."""
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.sock.close()

    async def wait_started(self, timeout: float = 30.0) -> None:
        with anyio.fail_after(timeout):
            while not self.server.started:
                await anyio.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
