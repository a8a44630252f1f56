"""The control API of a running pipeline: health, per-component counters and the graph, as
JSON, plus control actions components offer. `revopipe top` reads it (as `vector top` reads
Vector's API); plugin commands such as `revopipe alerts ack` call the actions
(`revopipe.control` is the client).

Served by aiohttp on the pipeline's own event loop, so a handler reads the counters
between two steps of the runtime and never sees a half-updated snapshot. Off unless
`[pipeline] api` (or `revopipe run --api`) sets an address.

Endpoints (GET, JSON):

- `/healthz` (liveness, for orchestrators): 200 `{"status": "alive", "uptime"}` whenever the
  event loop answers; it never looks at components, so a failing sink does not get the
  process killed (restarting would not fix the sink, and the supervisor already retries).
- `/readyz` (readiness): 200 `{"status": "ready", ...}` only while the pipeline runs with
  its sources started, is not draining, and its overall health is not unhealthy; else 503
  `{"status": "not ready", "reasons": [...]}`.
- `/api/v1/health`: the overall status by the rule in `revopipe.health` (unhealthy if a
  required component or service is unhealthy, degraded if anything is degraded or an
  optional service is unhealthy), its reason, each component's and each monitored
  service's health and reason; HTTP 503 while the overall status is unhealthy.
- `/api/v1/components`: every component's counters plus `timestamp`, this process's
  monotonic clock in seconds, so a client turns two polls into rates.
- `/api/v1/pipeline`: name, version, pid, uptime, the graph's edges.

Control actions (`Component.control`, declared in `control_actions`):

- `GET /api/v1/components/{name}/control/{action}`: a "read" action; params are the query
  string.
- `POST` on the same path: any declared action; params are the JSON object body
  (`Content-Type: application/json`, which a web page cannot send cross-origin without a
  preflight this server never answers). Refused with 403 unless the API is bound to
  loopback: writes must not be reachable from other machines.

Answers: 200 `{"component", "action", "result"}`; 400 bad JSON or a `ControlError` the
component raised; 403 a write on a remote bind or from a foreign `Origin`; 404 unknown
component or action (the message lists the actions); 405 a write action over GET; 409 no
live instance (restarting); 415 a POST without a JSON content type; 503 the component stayed
busy; 500 anything else the component raised (logged with its traceback). Errors are
`{"error": message}`.

Every string a response carries passes through the config's redactor, so a value
interpolated from the environment never leaves the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from revopipe.components import ControlError
from revopipe.config.address import is_loopback, parse_address
from revopipe.config.redact import Redactor
from revopipe.events import HealthStatus

if TYPE_CHECKING:
    from revopipe.runtime.pipeline import Pipeline

log = logging.getLogger("revopipe.api")

API_FILE = "api.json"
"""Written to the pipeline's data_dir while the API is up: {"url", "pid", "started"}."""
PREFIX = "/api/v1"

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
CONTROL_WAIT = 10.0
"""Seconds a control request waits for the component to finish the batch it is on."""


def revopipe_version() -> str:
    try:
        return version("revopipe")
    except PackageNotFoundError:
        return "unknown"


class ApiError(RuntimeError):
    """The API could not start (address in use, wrong event loop, ...)."""


class ApiServer:
    """Serves the API of one pipeline. `start()` binds (port 0 picks a free port) and
    writes `api.json`; `stop()` closes the listener and removes the file."""

    def __init__(self, pipeline: Pipeline, address: str) -> None:
        self.pipeline = pipeline
        self.host, self.port = parse_address(address)
        self.url = ""
        self.file = Path(pipeline.spec.settings.data_dir) / API_FILE
        self._runner: web.AppRunner | None = None
        self._record: dict[str, Any] | None = None
        self.local = is_loopback(self.host)
        """Bound to loopback: only then are control writes (POST) accepted."""

    async def start(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ApiError(
                "pipeline.api: the control API needs the asyncio event loop; run the "
                "pipeline with anyio's asyncio backend or remove the `api` key"
            ) from None
        local = self.local
        app = web.Application(middlewares=[_local_host_only] if local else [])
        control = f"{PREFIX}/components/{{name}}/control/{{action}}"
        app.add_routes(
            [
                web.get("/healthz", self._json(liveness_payload)),
                web.get("/readyz", self._json(readiness_payload, status_of=_ready_status)),
                web.get(f"{PREFIX}/health", self._json(health_payload, status_of=_health_status)),
                web.get(f"{PREFIX}/components", self._json(components_payload)),
                web.get(f"{PREFIX}/pipeline", self._json(pipeline_payload)),
                web.get(control, self._control, allow_head=False),
                web.post(control, self._control),
            ]
        )
        # Handlers answer at once; a short timeout only bounds a client that stalls mid-request
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self.host}:{self.port}"
            raise ApiError(
                f"pipeline.api: cannot listen on {where}: {exc.strerror or exc}; choose "
                "another port (port 0 picks a free one) or stop what holds it"
            ) from None
        bound = runner.addresses[0]
        self.url = f"http://{_url_host(self.host)}:{bound[1]}"
        try:
            self._write_file()
        except OSError as exc:
            await runner.cleanup()
            raise ApiError(
                f"pipeline.api: cannot write {self.file}: {exc.strerror or exc}; make "
                "data_dir writable or point it elsewhere"
            ) from None
        self._runner = runner
        if not local:
            log.warning(
                "control API listening on %s (%s): reachable from other machines and "
                "without authentication; it shows component names, types and counters",
                f"{self.host}:{bound[1]}",
                self.url,
            )
        else:
            log.info("control API at %s (try `revopipe top`)", self.url)

    async def stop(self) -> None:
        self._remove_file()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _json(
        self,
        build: Callable[[Pipeline], dict[str, Any]],
        status_of: Callable[[dict[str, Any]], int] | None = None,
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        redactor = self.pipeline.spec.redactor

        async def handler(request: web.Request) -> web.Response:
            body = redact(build(self.pipeline), redactor)
            status = status_of(body) if status_of else 200
            return web.json_response(body, status=status, dumps=_dumps)

        return handler

    async def _control(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        action = request.match_info["action"]
        redactor = self.pipeline.spec.redactor

        def error(status: int, message: str) -> web.Response:
            return web.json_response({"error": redactor.text(message)}, status=status, dumps=_dumps)

        write = request.method == "POST"
        if write:
            refused = self._refuse_write(request, name, action)
            if refused is not None:
                return error(*refused)
            params, problem = await _json_params(request)
            if problem:
                return error(400, f"{name}/{action}: {problem}")
        else:
            params = _query_params(request)
            spec = self.pipeline.spec.components.get(name)
            mode = spec.cls.control_actions.get(action) if spec is not None else None
            if mode == "write":
                return error(
                    405,
                    f"control action {action!r} of component {name!r} changes state: send it "
                    "with POST (and a JSON object body)",
                )
        try:
            result = await self.pipeline.control(name, action, params, wait=CONTROL_WAIT)
            body = redact({"component": name, "action": action, "result": result}, redactor)
            text = _dumps(body)
        except ControlError as exc:
            return error(exc.status, exc.message)
        except Exception as exc:
            log.error(
                "control action %r of component %r raised %s: %s",
                action,
                name,
                type(exc).__name__,
                redactor.text(str(exc)),
                exc_info=exc,
            )
            return error(
                500,
                f"control action {action!r} of component {name!r} failed: "
                f"{type(exc).__name__}: {exc} (logged by the pipeline)",
            )
        return web.Response(text=text, content_type="application/json")

    def _refuse_write(self, request: web.Request, name: str, action: str) -> tuple[int, str] | None:
        """(status, message) when a POST must not reach the component."""
        if not self.local:
            return (
                403,
                f"control action {action!r} of component {name!r} was refused: writes need the "
                f"API bound to loopback, and this one listens on {self.host}; run the command "
                "on the pipeline's machine with the API on 127.0.0.1 (`--api 127.0.0.1:0`)",
            )
        origin = request.headers.get("Origin")
        if origin is not None and not _local_origin(origin):
            return (403, f"requests from web pages ({origin}) may not change state")
        if request.content_type != "application/json":
            return (
                415,
                "control writes need `Content-Type: application/json` and a JSON object body",
            )
        return None

    def _write_file(self) -> None:
        record = {
            "url": self.url,
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        previous = read_api_file(self.file)
        if previous and previous.get("pid") != os.getpid() and pid_alive(previous.get("pid")):
            log.warning(
                "%s named another running instance (pid %s, %s); two pipelines share this "
                "data_dir, and `revopipe top` now finds this one",
                self.file,
                previous.get("pid"),
                previous.get("url"),
            )
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{API_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        tmp.replace(self.file)  # atomic: a reader never sees half a file
        self._record = record

    def _remove_file(self) -> None:
        if self._record is None:
            return
        # Only our own record: another instance may have taken the file over since.
        if read_api_file(self.file) == self._record:
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()
        self._record = None


@web.middleware
async def _local_host_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """On loopback, answer only requests addressed to a loopback name: a web page the
    user visits could otherwise rebind its own DNS name to 127.0.0.1 and read the API."""
    # No Host header at all (an HTTP/1.0 tool) cannot be a browser, which always sends one.
    host = _hostname(request.headers.get("Host", "localhost"))
    if host not in _LOCAL_HOSTS and not is_loopback(host):
        return web.json_response(
            {"error": f"Host {request.host!r} is not a loopback name; use 127.0.0.1"},
            status=421,
        )
    return await handler(request)


def _local_origin(origin: str) -> bool:
    host = (urlsplit(origin).hostname or "").lower()
    return host in _LOCAL_HOSTS or is_loopback(host)


async def _json_params(request: web.Request) -> tuple[dict[str, Any], str]:
    """(params, problem) from a POST body: a JSON object; empty means no parameters."""
    raw = await request.read()
    if not raw.strip():
        return {}, ""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, f"the request body is not valid JSON ({exc}); send a JSON object"
    if not isinstance(value, dict):
        return {}, f"the request body must be a JSON object, got {type(value).__name__}"
    return value, ""


def _query_params(request: web.Request) -> dict[str, Any]:
    """Query string -> params: a key given once maps to its string, repeated to a list."""
    out: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        out[key] = values[0] if len(values) == 1 else list(values)
    return out


def _hostname(host_header: str) -> str:
    """The name in a Host header: 'a:1' -> 'a', '[::1]:1' -> '::1'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _url_host(bind_host: str) -> str:
    """A host a local client can connect to: the wildcard addresses are not one."""
    if bind_host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind_host == "::":
        return "[::1]"
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# -- payloads (pure functions of the pipeline's state) ------------------------------------


def health_payload(pipeline: Pipeline) -> dict[str, Any]:
    health = pipeline.health()
    components = {
        s.name: {"kind": s.kind, "health": str(s.health), "reason": s.reason}
        for s in pipeline.component_stats()
    }
    services = {
        e.name: {
            "health": str(e.status),
            "reason": e.reason,
            "since": e.since,
            "required": e.required,
            "component": health.reporters.get(e.subject),
        }
        for e in health.services
    }
    return {
        "status": str(health.overall.status),
        "reason": health.overall.reason,
        "running": pipeline.running_now,
        "draining": pipeline.draining,
        "ready": health.ready,
        "components": components,
        "services": services,
    }


def liveness_payload(pipeline: Pipeline) -> dict[str, Any]:
    return {"status": "alive", "uptime": pipeline.uptime}


def readiness_payload(pipeline: Pipeline) -> dict[str, Any]:
    health = pipeline.health()
    reasons = health.not_ready
    return {
        "status": "ready" if not reasons else "not ready",
        "health": str(health.overall.status),
        "reasons": reasons,
    }


def _ready_status(body: Mapping[str, Any]) -> int:
    return 200 if body["status"] == "ready" else 503


def _health_status(body: Mapping[str, Any]) -> int:
    return 503 if body["status"] == HealthStatus.UNHEALTHY else 200


def components_payload(pipeline: Pipeline) -> dict[str, Any]:
    rows = []
    for s in pipeline.component_stats():
        row = s.snapshot()
        queue = pipeline.queue_depth(s.name)
        row["queue"] = None if queue is None else {"depth": queue[0], "capacity": queue[1]}
        row["inputs"] = list(pipeline.spec.components[s.name].inputs)
        rows.append(row)
    # Read after the counters: a rate over [t0, t1] then never counts events after t1.
    return {"timestamp": time.monotonic(), "components": rows}


def pipeline_payload(pipeline: Pipeline) -> dict[str, Any]:
    spec = pipeline.spec
    return {
        "name": spec.settings.name,
        "version": revopipe_version(),
        "pid": os.getpid(),
        "uptime_seconds": pipeline.uptime,
        "running": pipeline.running_now,
        "draining": pipeline.draining,
        "components": [
            {"name": n, "kind": spec.components[n].kind, "type": spec.components[n].config.type}
            for n in spec.order
        ],
        "edges": [[i, n] for n in spec.order for i in spec.components[n].inputs],
    }


_FIXED_VOCABULARY = frozenset({"kind", "health", "status"})


def redact(value: Any, redactor: Redactor) -> Any:
    """`value` with every string value passed through the redactor. Keys are names chosen
    in the file or by this module, never interpolated, and fields whose values come from
    a fixed vocabulary are left alone: masking them would only break clients."""
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, Mapping):
        return {k: v if k in _FIXED_VOCABULARY else redact(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, redactor) for v in value]
    return value


# -- api.json, shared with `revopipe top` ---------------------------------------------


def read_api_file(path: Path) -> dict[str, Any] | None:
    """The record in an `api.json`, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
