"""ASGI middleware: a server span and `http.server.request.duration` per HTTP request.

    from revopipe.instrument.asgi import RevopipeMiddleware

    app.add_middleware(RevopipeMiddleware)        # Starlette / FastAPI
    app = RevopipeMiddleware(app)                 # any ASGI application

Per HTTP request it continues the caller's trace from `traceparent` / `tracestate`, opens
a server span (current while the application runs, so spans opened in handlers are its
children), and records the request's duration in seconds into the histogram
`http.server.request.duration` with the tags `http.route` (the route template, e.g.
`/users/{id}`), `http.request.method` and `http.response.status_class` (`2xx` .. `5xx`).
An exception escaping the application counts as a 5xx and fails the span. Lifespan and
websocket connections pass through untouched.

A plain ASGI middleware, not Starlette's `BaseHTTPMiddleware`: no extra task per request,
and streaming responses stream. benches/bench_asgi.py measures its cost per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Literal

from revopipe.instrument._http import (
    KNOWN_METHODS,
    OTHER_METHOD,
    BoundedValues,
    DurationHistograms,
)
from revopipe.trace.propagation import extract_asgi
from revopipe.trace.spans import CURRENT, LiveSpan

__all__ = ["SERVER_DURATION", "UNMATCHED", "RevopipeMiddleware", "route_template"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SERVER_DURATION: Final = "http.server.request.duration"
UNMATCHED: Final = "unmatched"
"""`http.route` of a request no route matched (a 404, or an app without a router)."""

_TAG_KEYS: Final = ("http.route", "http.request.method", "http.response.status_class")
_CLASSES: Final = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_MAX_CACHED_TEMPLATES: Final = 4096


def route_template(scope: Scope) -> str | None:
    """The template of the route that handled the request (`/users/{id}`), read from
    the scope after routing: Starlette and FastAPI put the matched route object in
    `scope["route"]`. Routes inside a `Mount` get the mount's path in front; a request
    that reached a mount but no route inside it gets `<mount>/{path}`. None when the
    framework reported no route."""
    route = scope.get("route")
    if route is None:
        return None
    # path_format drops convertors: "/items/{n}" rather than "/items/{n:int}".
    path = getattr(route, "path_format", None)
    if not isinstance(path, str):
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return None
    # Starlette records mounts by moving the matched prefix into root_path; app_root_path
    # is the root_path before the first mount.
    root = scope.get("root_path", "")
    app_root = scope.get("app_root_path", root)
    prefix = (
        root[len(app_root) :]
        if isinstance(root, str) and isinstance(app_root, str) and root.startswith(app_root)
        else ""
    )
    if hasattr(route, "endpoint"):  # a Route (FastAPI's APIRoute included)
        return prefix + path if prefix else path
    # A Mount that matched with no route inside it matching (or no router inside): the
    # prefix already holds this mount's own path.
    return prefix + "/{path}" if prefix else path


class RevopipeMiddleware:
    """Traces and times every HTTP request of the wrapped ASGI application.

    unmatched_route: `http.route` when the framework reports no route: the constant
        "unmatched" (default) or "path" for the raw request path, for apps without a
        router; raw paths are bounded by `max_routes` like everything else.
    max_routes: distinct `http.route` values before new ones become "_OTHER", so that
        request data (raw paths, parametrised mounts) cannot create unbounded series.
    route_resolver: your own `scope -> template | None`, tried before `scope["route"]`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        unmatched_route: Literal["unmatched", "path"] = "unmatched",
        max_routes: int = 500,
        route_resolver: Callable[[Scope], str | None] | None = None,
    ) -> None:
        if unmatched_route not in ("unmatched", "path"):
            raise ValueError(
                f"RevopipeMiddleware: unmatched_route must be 'unmatched' or 'path', got "
                f"{unmatched_route!r}"
            )
        self.app = app
        self._raw_paths = unmatched_route == "path"
        self._routes = BoundedValues(max_routes)
        self._resolver = route_resolver
        self._durations = DurationHistograms(SERVER_DURATION, _TAG_KEYS)
        # route object (by id) and root paths -> (route object, bounded template): reading
        # the template from the route is several attribute lookups per request.
        self._templates: dict[tuple[int, object, object], tuple[object, str | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers")
        parent = extract_asgi(headers) if headers else None
        method: str = scope.get("method") or "GET"
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        span = LiveSpan(method, None, "server", CURRENT if parent is None else parent)
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span.__enter__()
        exc: BaseException | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as e:
            exc = e
            raise
        finally:
            self._finish(scope, span, method, status, exc)

    def _finish(
        self, scope: Scope, span: LiveSpan, method: str, status: int, exc: BaseException | None
    ) -> None:
        # An exception, whatever was sent before it, or no response at all: the request
        # failed on the server.
        status_text = _CLASSES.get(status // 100, "other") if status and exc is None else "5xx"
        route = self._route(scope)
        failed = status_text == "5xx"
        if failed and not isinstance(exc, Exception):
            # __exit__ fails the span for an Exception; a 5xx response, or a
            # cancellation before the response completed, fails it here.
            span.status = "error"
        if span._trace[1] or failed:
            # Name and attributes only matter for spans that may be exported.
            attrs: dict[str, object] = {
                "http.request.method": method,
                "url.path": scope.get("path", ""),
                "url.scheme": scope.get("scheme", "http"),
            }
            if route is not None:
                attrs["http.route"] = route
                span.name = f"{method} {route}"
            if status:
                attrs["http.response.status_code"] = status
            a = span.attributes
            span.attributes = {**a, **attrs} if a else attrs
        span.__exit__(None if exc is None else type(exc), exc, None)
        self._durations.record(
            (UNMATCHED if route is None else route, method, status_text),
            (span.end_perf - span.start_perf) / 1e9,
            span,
        )

    def _route(self, scope: Scope) -> str | None:
        if self._resolver is not None:
            try:
                route = self._resolver(scope)
            except Exception:  # a resolver bug must not turn into a failed request
                route = None
            if route is not None:
                return self._routes(route)
        obj = scope.get("route")
        if obj is not None:
            key = (id(obj), scope.get("root_path"), scope.get("app_root_path"))
            hit = self._templates.get(key)
            if hit is not None and hit[0] is obj:
                return hit[1]
            template = route_template(scope)
            bounded = None if template is None else self._routes(template)
            if len(self._templates) < _MAX_CACHED_TEMPLATES:
                self._templates[key] = (obj, bounded)
            if bounded is not None:
                return bounded
        if self._raw_paths:
            path = scope.get("path")
            if isinstance(path, str) and path:
                return self._routes(path)
        return None
