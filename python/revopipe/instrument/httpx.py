"""httpx client instrumentation: a client span and `http.client.request.duration` per
request, and `traceparent` / `tracestate` sent along so the server continues the trace.

    import httpx
    from revopipe.instrument import httpx as rp_httpx

    client = httpx.AsyncClient(event_hooks=rp_httpx.async_event_hooks())
    client = httpx.Client(event_hooks=rp_httpx.event_hooks())
    rp_httpx.instrument(existing_client)                # adds the hooks to a client

    # or, to also see requests that never get a response (connection refused, timeouts):
    client = httpx.AsyncClient(transport=rp_httpx.AsyncTracingTransport())
    client = httpx.Client(transport=rp_httpx.TracingTransport())

The span is a child of the span current where the request is sent, named after the
method, and ends when the response headers arrive (the body is read after that, by your
code). The duration is recorded in seconds with the tags `http.request.method`,
`server.address` and `http.response.status_class`; a request that failed without a
response (transport only) gets `error.type` (the exception's class name) instead of the
status class. 4xx and 5xx responses fail the client span.

What event hooks cannot see: httpx calls the response hook only when a response arrives,
so with hooks alone a request that fails to connect, times out or is cancelled leaves
its span unended (never exported, garbage-collected with the request) and records no
duration. The transport wrappers see those too; they can be combined with the hooks
(the transport then ends the hook's span when the request fails).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx

from revopipe.instrument._http import (
    BoundedValues,
    DurationHistograms,
    normalize_method,
    status_class,
)
from revopipe.trace.propagation import format_traceparent
from revopipe.trace.spans import LiveSpan, start_span

__all__ = [
    "CLIENT_DURATION",
    "AsyncTracingTransport",
    "ClientTracer",
    "TracingTransport",
    "async_event_hooks",
    "event_hooks",
    "instrument",
]

CLIENT_DURATION: Final = "http.client.request.duration"
SPAN_EXTENSION: Final = "revopipe.span"
"""The key under which a request's client span travels in `request.extensions`."""

MAX_HOSTS: Final = 1000
"""Distinct `server.address` values before new ones become "_OTHER" (a crawler must not
create a series per site)."""


def _attributes(method: str, url: httpx.URL) -> dict[str, object]:
    # No query string and no user info: they may hold credentials.
    return {
        "http.request.method": method,
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
        "url.full": str(url.copy_with(query=None, fragment=None, username=None, password=None)),
    }


class ClientTracer:
    """Starts and ends client spans and records durations; holds the histogram handles
    it has looked up. `event_hooks()`, `async_event_hooks()` and each transport make
    their own."""

    __slots__ = ("_durations", "_failures", "_hosts")

    def __init__(self, max_hosts: int = MAX_HOSTS) -> None:
        self._durations = DurationHistograms(
            CLIENT_DURATION,
            ("http.request.method", "server.address", "http.response.status_class"),
        )
        self._failures = DurationHistograms(
            CLIENT_DURATION, ("http.request.method", "server.address", "error.type")
        )
        self._hosts = BoundedValues(max_hosts)

    def start(self, request: httpx.Request) -> LiveSpan:
        """Open the request's client span (a child of the current span) and write its
        `traceparent` / `tracestate` into the request's headers."""
        method = normalize_method(request.method)
        span = start_span(method, None, "client")
        t = span._trace
        headers = request.headers
        headers["traceparent"] = format_traceparent(t[0], span.span_id, t[1])
        if t[2]:
            headers["tracestate"] = t[2]
        request.extensions[SPAN_EXTENSION] = span
        if span.sampled:
            span.set_attributes(_attributes(method, request.url))
        return span

    def finish(self, request: httpx.Request, status: int) -> None:
        """End the request's span with the response's status; record the duration."""
        span = request.extensions.pop(SPAN_EXTENSION, None)
        if not isinstance(span, LiveSpan) or span.ended:
            return
        method = normalize_method(request.method)
        if status >= 400:
            span.status = "error"
        if not span.sampled and status >= 400:
            span.set_attributes(_attributes(method, request.url))
        if span.sampled or status >= 400:
            span.set_attribute("http.response.status_code", status)
        span.end()
        self._durations.record(
            (method, self._hosts(request.url.host), status_class(status)), span.duration_s, span
        )

    def fail(self, request: httpx.Request, exc: BaseException) -> None:
        """End the request's span as failed without a response; record the duration with
        `error.type`."""
        span = request.extensions.pop(SPAN_EXTENSION, None)
        if not isinstance(span, LiveSpan) or span.ended:
            return
        method = normalize_method(request.method)
        if not span.sampled:
            span.set_attributes(_attributes(method, request.url))
        error_type = type(exc).__name__
        span.set_attribute("error.type", error_type)
        if not isinstance(exc, Exception):
            span.status = "error"  # cancelled: end() fails the span only for an Exception
        span.end(exc)
        self._failures.record(
            (method, self._hosts(request.url.host), error_type), span.duration_s, span
        )

    # hooks

    def on_request(self, request: httpx.Request) -> None:
        if SPAN_EXTENSION not in request.extensions:
            self.start(request)

    def on_response(self, response: httpx.Response) -> None:
        self.finish(response.request, response.status_code)

    async def on_request_async(self, request: httpx.Request) -> None:
        if SPAN_EXTENSION not in request.extensions:
            self.start(request)

    async def on_response_async(self, response: httpx.Response) -> None:
        self.finish(response.request, response.status_code)


def event_hooks() -> dict[str, list[Callable[..., object]]]:
    """Hooks for `httpx.Client(event_hooks=...)`."""
    t = ClientTracer()
    return {"request": [t.on_request], "response": [t.on_response]}


def async_event_hooks() -> dict[str, list[Callable[..., Awaitable[object]]]]:
    """Hooks for `httpx.AsyncClient(event_hooks=...)`."""
    t = ClientTracer()
    return {"request": [t.on_request_async], "response": [t.on_response_async]}


def instrument(client: httpx.Client | httpx.AsyncClient) -> None:
    """Add the hooks to an existing client, after its own hooks. Instrumenting a client
    twice adds nothing."""
    current = client.event_hooks
    if any(
        isinstance(getattr(h, "__self__", None), ClientTracer) for h in current.get("request", [])
    ):
        return
    hooks = async_event_hooks() if isinstance(client, httpx.AsyncClient) else event_hooks()
    client.event_hooks = {
        kind: [*current.get(kind, []), *hooks[kind]] for kind in ("request", "response")
    }


# ------------------------------------------------------------------------------ transports


class TracingTransport(httpx.BaseTransport):
    """Wraps a transport (default `httpx.HTTPTransport(**kwargs)`) to trace every request,
    including those that fail without a response."""

    def __init__(self, transport: httpx.BaseTransport | None = None, **kwargs: Any) -> None:
        self._inner = transport if transport is not None else httpx.HTTPTransport(**kwargs)
        self._tracer = ClientTracer()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        own = SPAN_EXTENSION not in request.extensions
        if own:
            self._tracer.start(request)
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            self._tracer.fail(request, exc)
            raise
        if own:
            self._tracer.finish(request, response.status_code)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncTracingTransport(httpx.AsyncBaseTransport):
    """Wraps an async transport (default `httpx.AsyncHTTPTransport(**kwargs)`) to trace
    every request, including those that fail without a response."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport(**kwargs)
        self._tracer = ClientTracer()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        own = SPAN_EXTENSION not in request.extensions
        if own:
            self._tracer.start(request)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            self._tracer.fail(request, exc)
            raise
        if own:
            self._tracer.finish(request, response.status_code)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
