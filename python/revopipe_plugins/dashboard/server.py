"""The dashboard's HTTP side: the page, its static files, the JSON API and the live stream,
served by Starlette under uvicorn on the pipeline's own event loop (so a handler reads the
state between two batches, never half-way through one).

The live stream: one `Hub` recomputes each widget at most every `refresh` (its own or
the dashboard's), and only when something it reads may have changed; a result that
differs from the last one is numbered (`seq`) and handed to every open stream. A stream
keeps only the newest message per widget, so a slow tab skips stale updates instead of
queueing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from revopipe.components import ControlError
from revopipe.widgets import Widget, WidgetError
from revopipe_plugins.dashboard.security import CSRF_COOKIE, SESSION_COOKIE, Guard

if TYPE_CHECKING:
    from revopipe_plugins.dashboard.sink import DashboardSink

log = logging.getLogger("revopipe.dashboard")

STATIC = resources.files("revopipe_plugins.dashboard") / "static"
HEARTBEAT = 15.0
"""Seconds between SSE comments on an idle stream, so proxies keep it open."""
MAX_STREAMS = 64


class DashboardError(RuntimeError):
    """The dashboard could not start (address in use, ...)."""


@dataclass(slots=True, eq=False)
class _Stream:
    """One open tab: the newest unsent message per widget."""

    pending: dict[str, str] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


class Hub:
    """Recomputes widgets for the live stream and fans the changes out to every tab."""

    def __init__(self, sink: DashboardSink) -> None:
        self.sink = sink
        self.streams: set[_Stream] = set()
        self.last: dict[str, str] = {}
        """The last message of every widget: what a new tab gets first."""
        self._last_data: dict[str, str] = {}
        self._seen_version: dict[str, int] = {}
        self.seq = 0
        self._wakes: dict[str, asyncio.Event] = {}
        self.watched = asyncio.Event()
        """Set while at least one stream is open."""
        self.computations = 0

    def notify(self) -> None:
        """New data arrived (called by `write`)."""
        for wake in self._wakes.values():
            wake.set()

    async def run(self) -> None:
        # One task per widget: a slow one (trends reading a week of history) never
        # holds back the live ones.
        async with asyncio.TaskGroup() as tg:
            for w in self.sink.widgets:
                tg.create_task(self._loop(w), name=f"dashboard-widget-{w.id}")

    async def _loop(self, w: Widget[Any]) -> None:
        wake = self._wakes[w.id] = asyncio.Event()
        refresh = self.sink.refresh_of(w)
        while True:
            # Nobody watches: compute nothing (GET /api/widgets/{id} computes on demand);
            # the first tab to open has every waiting widget computed at once.
            await self.watched.wait()
            wake.clear()  # before reading: a batch during the computation wakes the next
            try:
                pushed = await self._recompute(w)
            except Exception as exc:  # keep the widget's loop alive whatever happened
                log.error("dashboard widget %r: %s: %s", w.id, type(exc).__name__, exc)
                pushed = True
            if pushed:
                await asyncio.sleep(refresh)  # no widget reaches a tab more often
            else:
                # Its data did not change: the next batch is computed and sent at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), HEARTBEAT)

    async def _recompute(self, w: Widget[Any], force: bool = False) -> bool:
        """Recompute `w` and send it to the tabs if it changed; False when skipped because
        nothing it reads changed since its last computation."""
        version = self.sink.state.version
        if (
            not force
            and not w.polls
            and self._seen_version.get(w.id) == version
            and w.id in self.last
        ):
            return False
        self._seen_version[w.id] = version
        try:
            data = await w.data({})
        except Exception as exc:  # one broken widget must not stop the others' updates
            log.warning("dashboard widget %r failed: %s: %s", w.id, type(exc).__name__, exc)
            data = {"error": f"{type(exc).__name__}: {exc}"}
        self.computations += 1
        text = self.sink.security.dumps(data)
        if self._last_data.get(w.id) == text:
            return True
        self._last_data[w.id] = text
        self.seq += 1
        message = f'{{"widget":{json.dumps(w.id)},"seq":{self.seq},"data":{text}}}'
        self.last[w.id] = message
        for s in self.streams:
            s.pending[w.id] = message
            s.wake.set()
        return True

    async def refresh_now(self, types: Iterable[str]) -> None:
        """Recompute the widgets of these types at once (after an action changed what
        they show), without waiting for their next turn."""
        wanted = set(types)
        for w in self.sink.widgets:
            if w.type_name in wanted:
                await self._recompute(w, force=True)

    def open(self) -> _Stream:
        s = _Stream(pending=dict(self.last))
        if s.pending:
            s.wake.set()
        self.streams.add(s)
        self.watched.set()
        return s

    def close_all(self) -> None:
        for s in list(self.streams):
            s.closed = True
            s.wake.set()

    async def events(self, s: _Stream) -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            while not s.closed:
                try:
                    await asyncio.wait_for(s.wake.wait(), HEARTBEAT)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                s.wake.clear()
                if s.closed:
                    break
                batch, s.pending = s.pending, {}
                yield "".join(f"data: {m}\n\n" for m in batch.values())
        finally:
            self.streams.discard(s)
            if not self.streams:
                self.watched.clear()


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: SIGINT/SIGTERM belong to the pipeline, which
    drains and then stops the dashboard."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DashboardServer:
    """Binds in `start()` (so a taken port fails the sink's start with a clear message),
    serves in a task on the running loop, stops in `stop()`."""

    def __init__(self, sink: DashboardSink, host: str, port: int) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        self.hub = Hub(sink)
        self.url = ""
        self._server: _Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._plotly_gz: bytes | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host or "0.0.0.0", self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise DashboardError(
                f"dashboard {self.sink.context.name!r}: cannot listen on "
                f"{self.sink.config.listen}: {exc.strerror or exc}; choose another `listen` "
                "port (port 0 picks a free one) or stop what holds it"
            ) from None
        bound = sock.getsockname()[1]
        url_host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self.url = f"http://{url_host}:{bound}"
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ws="none",
        )
        self._server = _Server(config)
        self._tasks = [
            asyncio.create_task(self._serve(self._server, sock), name="dashboard-http"),
            asyncio.create_task(self.hub.run(), name="dashboard-hub"),
        ]

    async def _serve(self, server: _Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()

    async def stop(self) -> None:
        self.hub.close_all()
        server, self._server = self._server, None
        if server is not None:
            server.should_exit = True
        tasks, self._tasks = self._tasks, []
        if tasks:
            tasks[1].cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5.0)

    # -- the app ------------------------------------------------------------------------

    def app(self) -> Any:
        routes = [
            Route("/", self.page),
            Route("/static/{name}", self.static),
            Route("/api/widgets", self.widgets),
            Route("/api/widgets/{id}", self.widget),
            Route("/api/stream", self.stream),
            Route("/api/alerts/{fingerprint}/ack", self.ack, methods=["POST"]),
            Route("/api/silences", self.silence, methods=["POST"]),
            Route("/healthz", self.healthz),
        ]
        app = Starlette(routes=routes)
        return Guard(app, self.sink.security)

    def _json(self, value: Any, status: int = 200) -> Response:
        return Response(
            self.sink.security.dumps(value),
            status_code=status,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    def _error(self, status: int, message: str) -> Response:
        return self._json({"error": message}, status)

    async def page(self, request: Request) -> Response:
        sec = self.sink.security
        if sec.token and "token" in request.query_params:
            # The token was right (the guard checked it): trade it for the session cookie
            # and drop it from the address bar and history.
            resp: Response = RedirectResponse("/", status_code=303)
            resp.set_cookie(SESSION_COOKIE, sec.session, httponly=True, samesite="strict", path="/")
            return resp
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        html = html.replace("{{csrf}}", sec.csrf).replace(
            "{{title}}", _escape(sec.redact(self.sink.title))
        )
        resp = Response(html, media_type="text/html; charset=utf-8")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
            "frame-ancestors 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.set_cookie(CSRF_COOKIE, sec.csrf, httponly=False, samesite="strict", path="/")
        return resp

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        types = {
            "app.js": "text/javascript",
            "app.css": "text/css",
            "plotly.min.js": "text/javascript",
        }
        if name not in types:
            return self._error(404, f"no static file {name!r}")
        headers = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
        if name == "plotly.min.js":
            # 4.6 MB shipped by the plotly package; compressed once, served offline.
            if self._plotly_gz is None:
                raw = (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
                self._plotly_gz = gzip.compress(raw, 6)
                self._plotly_raw = raw
            if "gzip" in request.headers.get("accept-encoding", ""):
                headers["Content-Encoding"] = "gzip"
                return Response(self._plotly_gz, media_type=types[name], headers=headers)
            return Response(self._plotly_raw, media_type=types[name], headers=headers)
        body = (STATIC / name).read_bytes()
        return Response(
            body, media_type=types[name], headers={**headers, "Cache-Control": "no-cache"}
        )

    async def widgets(self, request: Request) -> Response:
        sink = self.sink
        return self._json(
            {
                "title": sink.title,
                "refresh": sink.config.refresh,
                "csrf_token": sink.security.csrf,
                "columns": 12,
                "widgets": [sink.describe(w) for w in sink.widgets],
            }
        )

    async def widget(self, request: Request) -> Response:
        wid = request.path_params["id"]
        w = self.sink.widget(wid)
        if w is None:
            known = ", ".join(x.id for x in self.sink.widgets)
            return self._error(404, f"no widget {wid!r}; widgets: {known}")
        try:
            data = await w.data(dict(request.query_params))
        except WidgetError as exc:
            return self._error(exc.status, f"widget {wid!r}: {exc.message}")
        except ControlError as exc:
            return self._error(exc.status, f"widget {wid!r}: {exc.message}")
        return self._json({"widget": wid, "seq": self.hub.seq, "data": data})

    async def stream(self, request: Request) -> Response:
        if len(self.hub.streams) >= MAX_STREAMS:
            return self._error(
                503, f"too many open dashboard streams ({MAX_STREAMS}); close some tabs"
            )
        s = self.hub.open()
        return StreamingResponse(
            self.hub.events(s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        refused = self.sink.security.refuse_write(request.headers, request.url.scheme)
        if refused is not None:
            return self._error(403, refused)
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._error(400, f"the request body is not valid JSON ({exc}); send an object")
        if not isinstance(value, dict):
            return self._error(400, "the request body must be a JSON object")
        return value

    async def _control(self, action: str, params: Mapping[str, Any]) -> Response:
        sink = self.sink
        name = sink.alerts_name
        control = sink.context.control
        if name is None or control is None:
            return self._error(
                409,
                f"dashboard {sink.context.name!r} has no alerts processor to act on; add one "
                "to the pipeline or name it with the dashboard's `alerts` key",
            )
        try:
            result = await control(name, action, params)
        except ControlError as exc:
            return self._error(exc.status, exc.message)
        await self.hub.refresh_now(("alerts",))
        return self._json({"component": name, "action": action, "result": result})

    async def ack(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        by = str(body.get("by") or "dashboard")
        return await self._control("ack", {"id": request.path_params["fingerprint"], "by": by})

    async def silence(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        params = {
            "matchers": body.get("matchers") or [],
            "duration": body.get("duration", 3600),
            "by": str(body.get("by") or "dashboard"),
            "comment": str(body.get("comment") or ""),
        }
        return await self._control("silence", params)

    async def healthz(self, request: Request) -> Response:
        body = self.sink.overall_health()
        return self._json(body, 503 if body["status"] == "unhealthy" else 200)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
