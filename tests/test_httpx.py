"""httpx instrumentation against a real server on loopback: client spans, the headers
the server receives, `http.client.request.duration`, and what hooks and transports do
when no response ever comes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from revopipe import _core, metrics, trace
from revopipe.events import Span
from revopipe.instrument import httpx as rp_httpx
from revopipe.instrument.httpx import CLIENT_DURATION

DEFAULTS = {"sample_ratio": 1.0, "always_on_error": True, "max_buffered": 10_000}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    _core.reset_instruments()
    trace.configure(**DEFAULTS)
    trace.clear()
    yield
    _core.reset_instruments()
    trace.configure(**DEFAULTS)
    trace.clear()


async def echo(request: Request) -> Response:
    code = int(request.path_params.get("code", 200))
    return JSONResponse(
        {
            "traceparent": request.headers.get("traceparent"),
            "tracestate": request.headers.get("tracestate"),
        },
        status_code=code,
    )


async def hop(request: Request) -> Response:
    return RedirectResponse("/echo", status_code=307)


APP = Starlette(
    routes=[
        Route("/echo", echo),
        Route("/status/{code:int}", echo, methods=["GET", "POST"]),
        Route("/hop", hop),
    ]
)


@contextmanager
def server() -> Iterator[str]:
    """uvicorn on a free loopback port in a thread of its own (the sync client blocks)."""
    config = uvicorn.Config(
        APP, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with server() as u:
        yield u


def refused_url() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def readings() -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    return {r["tags"]: dict(r) for r in metrics.collect() if r["name"] == CLIENT_DURATION}


def tags(method: str, status_class: str, host: str = "127.0.0.1") -> tuple[tuple[str, str], ...]:
    return (
        ("http.request.method", method),
        ("http.response.status_class", status_class),
        ("server.address", host),
    )


def clients(spans: list[Span]) -> list[Span]:
    return [s for s in spans if dict(s.attributes).get("span.kind") == "client"]


def test_sync_hooks_trace_the_request_and_send_its_traceparent(url: str) -> None:
    with httpx.Client(base_url=url, event_hooks=rp_httpx.event_hooks()) as c:
        with trace.span("job") as job:
            job_state = trace.SpanContext(job.trace_id, job.span_id, True, "vendor=1")
            with trace.span("call", parent=job_state):
                got = c.get("/echo?token=secret").json()
        assert c.get("/status/404").status_code == 404
        assert c.post("/status/503").status_code == 503

    spans = trace.drain()
    out = clients(spans)
    assert len(out) == 3
    first = out[0]
    call = next(s for s in spans if s.name == "call")
    assert got["traceparent"] == f"00-{first.trace_id}-{first.span_id}-01"
    assert got["tracestate"] == "vendor=1"
    assert first.parent_span_id == call.span_id and first.name == "GET"
    a = dict(first.attributes)
    assert a["url.full"] == f"{url}/echo"  # no query string: it may hold secrets
    assert a["server.address"] == "127.0.0.1" and a["http.response.status_code"] == "200"
    assert [s.status for s in out] == ["unset", "error", "error"]  # 4xx/5xx fail a client span

    r = readings()
    assert {k: v["count"] for k, v in r.items()} == {
        tags("GET", "2xx"): 1,
        tags("GET", "4xx"): 1,
        tags("POST", "5xx"): 1,
    }
    (ex,) = r[tags("GET", "2xx")]["exemplars"]
    assert (ex[1], ex[2]) == (first.trace_id, first.span_id)


@pytest.mark.anyio
async def test_instrumenting_an_async_client_keeps_its_own_hooks_and_is_idempotent(
    url: str,
) -> None:
    mine: list[str] = []

    async def own_hook(request: httpx.Request) -> None:
        mine.append(str(request.url))

    async with httpx.AsyncClient(base_url=url, event_hooks={"request": [own_hook]}) as c:
        rp_httpx.instrument(c)
        rp_httpx.instrument(c)
        assert len(c.event_hooks["request"]) == 2
        for _ in range(3):
            got = (await c.get("/echo")).json()
            assert got["traceparent"] is not None
    assert len(mine) == 3
    assert len(clients(trace.drain())) == 3
    assert readings()[tags("GET", "2xx")]["count"] == 3


def test_redirect_hops_get_a_span_each(url: str) -> None:
    with httpx.Client(base_url=url, event_hooks=rp_httpx.event_hooks()) as c:
        got = c.get("/hop", follow_redirects=True).json()
    first, second = clients(trace.drain())
    assert got["traceparent"] == f"00-{second.trace_id}-{second.span_id}-01"
    assert first.span_id != second.span_id
    assert dict(first.attributes)["http.response.status_code"] == "307"
    assert readings()[tags("GET", "3xx")]["count"] == 1


def test_unsampled_requests_propagate_not_sampled_and_record_without_exemplars(url: str) -> None:
    trace.configure(sample_ratio=0.0)
    with httpx.Client(base_url=url, event_hooks=rp_httpx.event_hooks()) as c:
        got = c.get("/echo").json()
        c.get("/status/500")
    assert got["traceparent"].endswith("-00")
    (failed,) = clients(trace.drain())  # only the error is kept
    assert failed.status == "error" and dict(failed.attributes)["url.full"].endswith("/status/500")
    r = readings()
    assert r[tags("GET", "2xx")]["count"] == 1 and r[tags("GET", "2xx")]["exemplars"] == []
    assert len(r[tags("GET", "5xx")]["exemplars"]) == 1


def test_hooks_cannot_see_a_connection_that_never_happened() -> None:
    with (
        httpx.Client(base_url=refused_url(), event_hooks=rp_httpx.event_hooks()) as c,
        pytest.raises(httpx.ConnectError),
    ):
        c.get("/echo")
    # documented limitation: no response hook, so no span and no duration
    assert trace.drain() == []
    assert readings() == {}


def test_the_transport_records_failures_without_a_response(url: str) -> None:
    bad = refused_url()
    with httpx.Client(transport=rp_httpx.TracingTransport()) as c:
        assert c.get(f"{url}/echo").json()["traceparent"] is not None
        with pytest.raises(httpx.ConnectError):
            c.get(f"{bad}/echo")
    ok, failed = clients(trace.drain())
    assert ok.status == "unset"
    assert failed.status == "error"
    a = dict(failed.attributes)
    assert a["error.type"] == "ConnectError" and a["exception.type"].endswith("ConnectError")
    r = readings()
    assert r[tags("GET", "2xx")]["count"] == 1
    failure = (
        ("error.type", "ConnectError"),
        ("http.request.method", "GET"),
        ("server.address", "127.0.0.1"),
    )
    assert r[failure]["count"] == 1


@pytest.mark.anyio
async def test_the_async_transport_with_hooks_ends_the_hooks_span_on_failure(url: str) -> None:
    transport = rp_httpx.AsyncTracingTransport()
    async with httpx.AsyncClient(
        transport=transport, event_hooks=rp_httpx.async_event_hooks()
    ) as c:
        assert (await c.get(f"{url}/echo")).status_code == 200
        with pytest.raises(httpx.ConnectError):
            await c.get(f"{refused_url()}/echo")
    ok, failed = clients(trace.drain())  # one span per request, not two
    assert ok.status == "unset" and failed.status == "error"
    counts = {k: v["count"] for k, v in readings().items()}
    assert sum(counts.values()) == 2
