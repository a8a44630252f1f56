"""Two Starlette services behind real uvicorn servers on loopback, instrumented with the
middleware and the httpx hooks, and a real pipeline `app -> aggregate -> sink` in the same
process: per-route counts and error rates come out as sent, percentiles equal those of
the durations the spans carry (within HDR precision), and one request's trace runs
through the test's client, service A, A's client and service B."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from revopipe import Batch, _core, trace
from revopipe.events import Span
from revopipe.instrument import httpx as rp_httpx
from revopipe.instrument.asgi import RevopipeMiddleware
from tests.helpers import pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

Key = tuple[str, str, str]  # route, method, status class


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """A uvicorn server for `app` on a free loopback port, on the running event loop."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(15):
            while not server.started:
                await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


def service_b() -> Starlette:
    async def stock(request: Request) -> Response:
        sku = request.path_params["sku"]
        if sku == "gone":
            raise HTTPException(404, "unknown sku")
        return JSONResponse({"sku": sku, "count": 3})

    app = Starlette(routes=[Route("/stock/{sku}", stock)])
    app.add_middleware(RevopipeMiddleware)
    return app


def service_a(b_url: str) -> Starlette:
    async def user(request: Request) -> Response:
        # a known minimum duration per request: uid % 5 + 1 ms
        await anyio.sleep((int(request.path_params["uid"]) % 5 + 1) / 1000)
        return PlainTextResponse("user")

    async def order(request: Request) -> Response:
        if request.path_params["oid"] % 4 == 0:
            raise HTTPException(404, "no such order")
        return PlainTextResponse("order")

    async def pay(request: Request) -> Response:
        if request.query_params.get("fail"):
            raise RuntimeError("card processor down")
        return PlainTextResponse("paid")

    async def checkout(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=b_url, event_hooks=rp_httpx.async_event_hooks()) as c:
            r = await c.get(f"/stock/{request.path_params['sku']}")
        return JSONResponse({"stock": r.status_code}, status_code=200 if r.is_success else 409)

    app = Starlette(
        routes=[
            Route("/users/{uid}", user),
            Route("/orders/{oid:int}", order),
            Route("/pay", pay, methods=["POST"]),
            Route("/checkout/{sku}", checkout),
        ]
    )
    app.add_middleware(RevopipeMiddleware)
    return app


async def workload(c: httpx.AsyncClient) -> tuple[Counter[Key], list[float]]:
    """Sends a known mix; returns what was sent per (route, method, status class) and
    the minimum durations the /users requests are known to take."""
    sent: Counter[Key] = Counter()
    user_sleeps: list[float] = []
    for uid in range(40):
        assert (await c.get(f"/users/{uid}")).status_code == 200
        sent["/users/{uid}", "GET", "2xx"] += 1
        user_sleeps.append((uid % 5 + 1) / 1000)
    for oid in range(1, 25):
        r = await c.get(f"/orders/{oid}")
        cls = "4xx" if oid % 4 == 0 else "2xx"
        assert r.status_code == (404 if cls == "4xx" else 200)
        sent["/orders/{oid}", "GET", cls] += 1
    for i in range(15):
        fail = i % 3 == 0
        r = await c.post("/pay", params={"fail": "1"} if fail else None)
        assert r.status_code == (500 if fail else 200)
        sent["/pay", "POST", "5xx" if fail else "2xx"] += 1
    for _ in range(6):
        assert (await c.get("/nowhere")).status_code == 404
        sent["unmatched", "GET", "4xx"] += 1
    return sent, user_sleeps


def server_key(s: Span) -> Key:
    a = dict(s.attributes)
    code = a.get("http.response.status_code")
    cls = "5xx" if s.status == "error" or code is None else f"{code[0]}xx"
    return a.get("http.route", "unmatched"), a["http.request.method"], cls


async def test_per_route_counts_error_rates_and_percentiles_match_what_was_sent(
    tmp_path: Path,
) -> None:
    _core.reset_instruments()
    trace.clear()
    collected: dict[str, list[Batch]] = {}
    p = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {
                "app": {
                    "type": "app",
                    "interval": "100ms",
                    "trace_sample_ratio": 1.0,
                    "trace_errors_always": True,
                }
            },
            "processors": {"stats": {"type": "aggregate", "inputs": ["app"], "window": "1h"}},
            "sinks": {"out": {"type": "collect", "inputs": ["stats"]}},
        },
        collected,
    )
    hooks = rp_httpx.async_event_hooks()
    with anyio.fail_after(60):
        async with (
            p.running(),
            serve(service_b()) as b_url,
            serve(service_a(b_url)) as a_url,
            httpx.AsyncClient(base_url=a_url, event_hooks=hooks) as c,
        ):
            sent, user_sleeps = await workload(c)
            with trace.span("test") as root:
                assert (await c.get("/checkout/abc")).json() == {"stock": 200}
            assert (await c.get("/checkout/gone")).status_code == 409
            sent["/checkout/{sku}", "GET", "2xx"] += 1
            sent["/checkout/{sku}", "GET", "4xx"] += 1

    batches = collected["out"]
    spans = [e for b in batches for e in b.events if isinstance(e, Span)]
    rows: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(list)
    for b in batches:
        for m in b.metrics:
            rows[m.name, m.tags].append(m.value)

    def tags(key: Key) -> tuple[tuple[str, str], ...]:
        route, method, cls = key
        return (
            ("http.request.method", method),
            ("http.response.status_class", cls),
            ("http.route", route),
        )

    # -- counts and error rates per route, exactly as sent (service A's routes)
    a_routes = {k for k in sent}
    got_counts = {k: sum(rows["http.server.request.duration.count", tags(k)]) for k in a_routes}
    assert got_counts == dict(sent)
    for route in {k[0] for k in sent}:
        total = sum(n for k, n in sent.items() if k[0] == route)
        errors = sum(n for k, n in sent.items() if k[0] == route and k[2] == "5xx")
        got_total = sum(v for k, v in got_counts.items() if k[0] == route)
        got_errors = sum(v for k, v in got_counts.items() if k[0] == route and k[2] == "5xx")
        assert got_errors / got_total == errors / total
    assert got_counts["/pay", "POST", "5xx"] / 15 == pytest.approx(1 / 3)
    # service B saw the two checkouts' calls
    assert (
        sum(rows["http.server.request.duration.count", tags(("/stock/{sku}", "GET", "2xx"))]) == 1
    )
    assert (
        sum(rows["http.server.request.duration.count", tags(("/stock/{sku}", "GET", "4xx"))]) == 1
    )

    # -- percentiles: those of the durations the server spans carry (the same readings)
    servers = [s for s in spans if dict(s.attributes).get("span.kind") == "server"]
    durations: dict[Key, list[float]] = defaultdict(list)
    for s in servers:
        durations[server_key(s)].append((s.end_ns - s.start_ns) / 1e9)
    assert {k: len(v) for k, v in durations.items() if k in sent} == dict(sent)
    for key, values in durations.items():
        t = tags(key)
        if len(rows["http.server.request.duration.count", t]) != 1:
            continue  # the run crossed an hour boundary: two windows, counts checked above
        ordered = sorted(values)
        assert rows["http.server.request.duration.max", t] == [
            pytest.approx(ordered[-1], rel=1e-3, abs=1e-6)
        ]
        assert rows["http.server.request.duration.min", t] == [
            pytest.approx(ordered[0], rel=1e-3, abs=1e-6)
        ]
        for q, stat in [(50, "p50"), (90, "p90"), (99, "p99")]:
            ref = ordered[math.ceil(q / 100 * len(ordered)) - 1]
            (got,) = rows[f"http.server.request.duration.{stat}", t]
            assert got == pytest.approx(ref, rel=1e-3, abs=1e-6), (key, stat)

    # the /users requests slept known amounts: each took at least that long
    users = sorted(durations["/users/{uid}", "GET", "2xx"])
    assert all(d >= s * 0.999 for d, s in zip(users, sorted(user_sleeps), strict=True))

    # -- one trace through test client -> A -> A's client -> B
    traced = [s for s in spans if s.trace_id == root.trace_id_hex]
    by_kind: dict[str, list[Span]] = defaultdict(list)
    for s in traced:
        by_kind[dict(s.attributes).get("span.kind", "internal")].append(s)
    (test_span,) = by_kind["internal"]
    clients = sorted(by_kind["client"], key=lambda s: s.start_ns)
    server_spans = sorted(by_kind["server"], key=lambda s: s.start_ns)
    assert len(clients) == 2 and len(server_spans) == 2
    to_a, to_b = clients
    at_a, at_b = server_spans
    assert to_a.parent_span_id == test_span.span_id
    assert at_a.parent_span_id == to_a.span_id and at_a.name == "GET /checkout/{sku}"
    assert to_b.parent_span_id == at_a.span_id
    assert at_b.parent_span_id == to_b.span_id and at_b.name == "GET /stock/{sku}"
    assert dict(to_b.attributes)["url.full"].endswith("/stock/abc")

    # client durations: the test's requests to A and A's calls to B
    a_host = (
        ("http.request.method", "GET"),
        ("http.response.status_class", "2xx"),
        ("server.address", "127.0.0.1"),
    )
    assert sum(rows["http.client.request.duration.count", a_host]) == (
        40 + 18 + 1 + 1  # users, orders ok, checkout ok, A -> B ok
    )
    assert trace.dropped_spans() == 0
