"""The ASGI middleware in-process (httpx's ASGITransport): route templates, status classes,
errors, trace continuation, exemplars, cardinality bounds and pass-through of the
scopes it does not time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from revopipe import _core, metrics, trace
from revopipe.instrument.asgi import SERVER_DURATION, RevopipeMiddleware, route_template

pytestmark = pytest.mark.anyio

Tags = tuple[tuple[str, str], ...]


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    _core.reset_instruments()
    trace.configure(sample_ratio=1.0, always_on_error=True, max_buffered=10_000)
    trace.clear()
    yield
    _core.reset_instruments()
    trace.configure(sample_ratio=1.0, always_on_error=True, max_buffered=10_000)
    trace.clear()


def durations() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(route, method, status class) -> the histogram reading, for the server metric."""
    out = {}
    for r in metrics.collect():
        if r["name"] == SERVER_DURATION:
            t = dict(r["tags"])
            key = (t["http.route"], t["http.request.method"], t["http.response.status_class"])
            out[key] = dict(r)
    return out


async def user(request: Request) -> Response:
    with trace.span("load user"):
        pass
    return PlainTextResponse(f"user {request.path_params['uid']}")


async def order(request: Request) -> Response:
    if request.path_params["oid"] >= 100:
        raise HTTPException(404, "no such order")
    return PlainTextResponse("order")


async def pay(request: Request) -> Response:
    raise RuntimeError("card processor down")


def report(request: Request) -> Response:  # a sync endpoint: runs in a worker thread
    with trace.span("render report"):
        pass
    return PlainTextResponse("report")


async def stream(request: Request) -> Response:
    async def chunks() -> Any:
        for i in range(3):
            yield f"chunk {i}\n"

    return StreamingResponse(chunks(), status_code=203)


async def item(request: Request) -> Response:
    return PlainTextResponse("item")


def make_app(**options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/users/{uid}", user),
            Route("/orders/{oid:int}", order),
            Route("/pay", pay, methods=["POST"]),
            Route("/report", report),
            Route("/stream", stream),
            Mount("/api/v1", routes=[Route("/items/{iid}", item)]),
        ]
    )
    app.add_middleware(RevopipeMiddleware, **options)
    return app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, raise_app_exceptions=False), base_url="http://test"
    )


async def test_each_request_is_timed_by_route_template_method_and_status_class() -> None:
    sent: Counter[tuple[str, str, str]] = Counter()
    async with client(make_app()) as c:
        for i in range(7):
            assert (await c.get(f"/users/{i}")).status_code == 200
            sent["/users/{uid}", "GET", "2xx"] += 1
        for oid in (1, 2, 150, 151, 3):
            r = await c.get(f"/orders/{oid}")
            sent["/orders/{oid}", "GET", "4xx" if oid >= 100 else "2xx"] += 1
            assert r.status_code == (404 if oid >= 100 else 200)
        for _ in range(3):
            assert (await c.post("/pay")).status_code == 500
            sent["/pay", "POST", "5xx"] += 1
        assert (await c.get("/pay")).status_code == 405  # the route matched, not the method
        sent["/pay", "GET", "4xx"] += 1
        assert (await c.get("/nowhere")).status_code == 404
        sent["unmatched", "GET", "4xx"] += 1
        assert (await c.get("/report")).status_code == 200
        sent["/report", "GET", "2xx"] += 1
        assert (await c.get("/stream")).text == "chunk 0\nchunk 1\nchunk 2\n"
        sent["/stream", "GET", "2xx"] += 1
        assert (await c.get("/api/v1/items/9")).status_code == 200
        sent["/api/v1/items/{iid}", "GET", "2xx"] += 1
        assert (await c.get("/api/v1/other")).status_code == 404
        sent["/api/v1/{path}", "GET", "4xx"] += 1
        assert (await c.request("BREW", "/users/1")).status_code == 405
        sent["/users/{uid}", "_OTHER", "4xx"] += 1

    got = durations()
    assert {k: v["count"] for k, v in got.items()} == dict(sent)
    for r in got.values():
        assert r["unit"] == "s"
        assert 0 < r["min"] <= r["max"] < 60

    spans = trace.drain()
    servers = [s for s in spans if dict(s.attributes).get("span.kind") == "server"]
    assert len(servers) == sum(sent.values())
    names = Counter(s.name for s in servers)
    assert names["GET /users/{uid}"] == 7
    assert names["POST /pay"] == 3
    assert names["GET"] == 1  # unmatched: the method alone
    failed = [s for s in servers if s.status == "error"]
    assert {s.name for s in failed} == {"POST /pay"}
    pay_attrs = dict(failed[0].attributes)
    assert pay_attrs["exception.type"] == "RuntimeError"
    assert pay_attrs["http.route"] == "/pay" and pay_attrs["url.path"] == "/pay"
    notfound = [s for s in servers if dict(s.attributes).get("http.response.status_code") == "404"]
    assert len(notfound) == 4  # two orders, one unmatched, one inside the mount
    assert {s.status for s in notfound} == {"unset"}  # a 4xx is the client's error


async def test_handler_spans_are_children_of_the_server_span_also_in_sync_endpoints() -> None:
    async with client(make_app()) as c:
        await c.get("/users/5")
        await c.get("/report")
    spans = {s.name: s for s in trace.drain()}
    for server, child in [("GET /users/{uid}", "load user"), ("GET /report", "render report")]:
        assert spans[child].parent_span_id == spans[server].span_id
        assert spans[child].trace_id == spans[server].trace_id


async def test_the_callers_traceparent_is_continued() -> None:
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with client(make_app()) as c:
        await c.get(
            "/users/1",
            headers={
                "traceparent": f"00-{caller_trace}-{caller_span}-01",
                "tracestate": "congo=t61rcWkgMzE",
            },
        )
        await c.get("/users/2", headers={"traceparent": "00-bad-header-01"})
    server = [s for s in trace.drain() if s.name == "GET /users/{uid}"]
    assert server[0].trace_id == caller_trace
    assert server[0].parent_span_id == caller_span
    assert server[1].parent_span_id is None  # invalid header: a new trace
    assert server[1].trace_id != caller_trace


async def test_sampled_requests_leave_exemplars_and_unsampled_ones_only_counts() -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"
    async with client(make_app()) as c:
        await c.get("/users/1")
        await c.get("/users/2", headers={"traceparent": caller + "0"})  # caller: not sampled
    (reading,) = durations().values()
    assert reading["count"] == 2
    spans = [s for s in trace.drain() if s.name == "GET /users/{uid}"]
    assert len(spans) == 1  # the unsampled one is not exported
    assert [(e[1], e[2]) for e in reading["exemplars"]] == [(spans[0].trace_id, spans[0].span_id)]


async def test_errors_are_exported_and_exemplified_when_nothing_is_sampled() -> None:
    trace.configure(sample_ratio=0.0)
    async with client(make_app()) as c:
        for _ in range(3):
            await c.get("/users/1")
        await c.post("/pay")
    spans = trace.drain()
    assert [s.name for s in spans] == ["POST /pay"]
    readings = durations()
    assert readings["/users/{uid}", "GET", "2xx"]["exemplars"] == []
    (ex,) = readings["/pay", "POST", "5xx"]["exemplars"]
    assert (ex[1], ex[2]) == (spans[0].trace_id, spans[0].span_id)


async def test_raw_paths_are_bounded_so_cardinality_cannot_explode() -> None:
    async def anything(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = RevopipeMiddleware(anything, unmatched_route="path", max_routes=3)
    async with client(app) as c:
        for i in range(10):
            await c.get(f"/page/{i}")
        await c.get("/page/0")
    counts = {k[0]: v["count"] for k, v in durations().items()}
    assert counts == {"/page/0": 2, "/page/1": 1, "/page/2": 1, "_OTHER": 7}


async def test_a_bare_asgi_app_gets_unmatched_and_a_resolver_can_name_routes() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def resolver(scope: Any) -> str | None:
        if scope["path"].startswith("/boom"):
            raise RuntimeError("resolver bug")
        return "/v/{x}" if scope["path"].startswith("/v/") else None

    async with client(RevopipeMiddleware(bare)) as c:
        await c.get("/whatever")
    async with client(RevopipeMiddleware(bare, route_resolver=resolver)) as c:
        await c.get("/v/1")
        await c.get("/v/2")
        await c.get("/boom")
    counts = {k: v["count"] for k, v in durations().items()}
    assert counts == {("unmatched", "GET", "2xx"): 2, ("/v/{x}", "GET", "2xx"): 2}


async def test_an_app_that_raises_before_responding_counts_as_5xx() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("no response at all")

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ValueError):
        await RevopipeMiddleware(broken)(
            {"type": "http", "method": "GET", "path": "/", "headers": []}, _receive, _send
        )
    await RevopipeMiddleware(silent)(
        {"type": "http", "method": "GET", "path": "/", "headers": []}, _receive, _send
    )
    assert {k: v["count"] for k, v in durations().items()} == {("unmatched", "GET", "5xx"): 2}
    assert [s.status for s in trace.drain()] == ["error", "error"]


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def test_lifespan_and_websocket_scopes_pass_through_untouched() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    mw = RevopipeMiddleware(app)
    for scope in (
        {"type": "lifespan", "asgi": {"version": "3.0"}},
        {"type": "websocket", "path": "/ws", "headers": [(b"traceparent", b"x")]},
    ):
        frozen = dict(scope)
        await mw(scope, _receive, _send)
        got_scope, got_receive, got_send = seen[-1]
        assert got_scope is scope and scope == frozen
        assert got_receive is _receive and got_send is _send
    assert durations() == {}
    assert trace.drain() == []


async def test_starlette_lifespan_still_runs_with_the_middleware() -> None:
    started: list[str] = []

    async def lifespan(app: Starlette) -> Any:
        started.append("up")
        yield
        started.append("down")

    from contextlib import asynccontextmanager

    app = Starlette(routes=[Route("/users/{uid}", user)], lifespan=asynccontextmanager(lifespan))
    app.add_middleware(RevopipeMiddleware)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    assert started == ["up", "down"]
    assert [m["type"] for m in outbox] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_fastapi_routes_are_templates() -> None:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    router = fastapi.APIRouter(prefix="/shop")

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise fastapi.HTTPException(status_code=404)
        return {"item_id": item_id}

    @router.post("/carts/{cart_id}/checkout")
    async def checkout(cart_id: str) -> dict[str, str]:
        return {"cart": cart_id}

    app.include_router(router)
    app.add_middleware(RevopipeMiddleware)
    async with client(app) as c:
        assert (await c.get("/items/3")).json() == {"item_id": 3}
        assert (await c.get("/items/0")).status_code == 404
        assert (await c.get("/items/x")).status_code == 422
        assert (await c.post("/shop/carts/abc/checkout")).status_code == 200
    counts = {k: v["count"] for k, v in durations().items()}
    assert counts == {
        ("/items/{item_id}", "GET", "2xx"): 1,
        ("/items/{item_id}", "GET", "4xx"): 2,
        ("/shop/carts/{cart_id}/checkout", "POST", "2xx"): 1,
    }


def test_route_template_reads_what_starlette_leaves_in_the_scope() -> None:
    inner = Route("/items/{iid:int}", item)
    assert route_template({"route": inner}) == "/items/{iid}"
    mounted = {"route": inner, "root_path": "/base/api", "app_root_path": "/base"}
    assert route_template(mounted) == "/api/items/{iid}"
    assert route_template({"route": Mount("/static", app=item)}) == "/static/{path}"
    assert route_template({}) is None
    assert route_template({"route": object()}) is None


async def test_a_conflicting_instrument_of_the_service_never_fails_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the service already uses the name with another unit
    metrics.histogram(
        SERVER_DURATION,
        "ms",
        {
            "http.route": "/users/{uid}",
            "http.request.method": "GET",
            "http.response.status_class": "2xx",
        },
    )
    async with client(make_app()) as c:
        for _ in range(2):
            assert (await c.get("/users/1")).status_code == 200
    warnings = [r for r in caplog.records if "not recording" in r.getMessage()]
    assert len(warnings) == 1  # once, not per request
    assert len([s for s in trace.drain() if s.name == "GET /users/{uid}"]) == 2
