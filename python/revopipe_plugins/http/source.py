"""The `http` source: an HTTP server taking OTLP/HTTP metrics and traces and JSON lines.

A request is answered only after its events were handed to the pipeline (`emit`
returned), so a 200 means accepted. A request refused for any reason (4xx, 503) contributed
nothing, so the client may send it again without duplicating anything.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
from aiohttp import web
from pydantic import Field, SecretStr

from revopipe.batch import Batch
from revopipe.components import Emit, Source
from revopipe.config import Duration, Size, SourceConfig
from revopipe.config.address import Address, parse_address
from revopipe.events import now_ns
from revopipe.wire import otlp
from revopipe_plugins.http.jsonlines import IngestError, parse_lines

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
JSONLINES_TYPES = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/jsonlines", JSON, "text/plain"}
)
OTLP_PATHS: dict[str, otlp.Signal] = {"/v1/metrics": "metrics", "/v1/traces": "traces"}
INGEST_PATH = "/ingest"
PATHS = (*OTLP_PATHS, INGEST_PATH)


class HttpConfig(SourceConfig):
    address: Address = Field(
        default="127.0.0.1:4318",
        description="where to listen, 'host:port' (port 0 picks a free one)",
    )
    max_body: Size = Field(
        default=4 * 2**20,
        ge=1,
        description="largest request body accepted, after gzip decompression, e.g. '4MiB'",
    )
    accept_timeout: Duration = Field(
        default=5.0,
        gt=0,
        description="how long a request may wait for a full pipeline before a 503, e.g. '5s'",
    )
    retry_after: Duration = Field(
        default=1.0,
        ge=0,
        description="the Retry-After of a 503 (whole seconds, rounded up), e.g. '1s'",
    )
    token: SecretStr | None = Field(
        default=None,
        description="when set, requests need 'Authorization: Bearer <token>' (use ${ENV_VAR})",
    )


class HttpError(Exception):
    """A request refused with an HTTP status and a message for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.details = details or {}
        """Extra fields of a JSON error body (the line and key of a bad JSON line)."""


Format = Literal["protobuf", "json"]


class HttpSource(Source[HttpConfig]):
    type_name = "http"
    Config = HttpConfig
    description = "HTTP server: OTLP/HTTP metrics and traces, and JSON lines on /ingest"

    async def start(self) -> None:
        self.listening = anyio.Event()
        self.bound: tuple[str, int] | None = None
        """The address actually listened on (the real port when configured with 0)."""
        self._decoder = otlp.OtlpDecoder()
        self._otlp_lock = asyncio.Lock()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._emit: Emit | None = None
        self._last_log = 0.0
        self._suppressed = 0

    # -- serving ---------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        host, port = parse_address(self.config.address, "127.0.0.1:4318")
        app = web.Application(middlewares=[self._middleware])
        for path in OTLP_PATHS:
            app.router.add_post(path, self._otlp)
        app.router.add_post(INGEST_PATH, self._ingest)
        # Bodies are decompressed here, bounded by max_body, not by aiohttp unbounded.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host or None, port)
            try:
                await site.start()
            except OSError as exc:
                raise OSError(
                    f"http source {self.context.name!r}: cannot listen on "
                    f"{self.config.address}: {exc}; choose another `address`"
                ) from exc
            sockname = runner.addresses[0]
            self.bound = (str(sockname[0]), int(sockname[1]))
            self.log.info("listening on %s:%d", *self.bound)
            self.listening.set()
            await anyio.sleep_forever()
        finally:
            # Drain: no new requests; those in flight finish (each bounded by
            # accept_timeout) so what they accepted reaches the pipeline.
            with anyio.CancelScope(shield=True):
                self._draining = True
                with anyio.move_on_after(self.config.accept_timeout + 5):
                    await self._idle.wait()
                with anyio.move_on_after(5):
                    await runner.cleanup()

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self._in_flight += 1
        self._idle.clear()
        try:
            if self._draining:
                raise HttpError(
                    503,
                    "the pipeline is shutting down; retry later",
                    {"Retry-After": str(math.ceil(self.config.retry_after))},
                )
            self._authorize(request)
            return await handler(request)
        except HttpError as exc:
            self._note_refusal(request, exc.status, exc.message)
            return _error_reply(request, exc.status, exc.message, exc.headers, exc.details)
        except web.HTTPException as exc:
            if exc.status == 404:
                message = f"no endpoint {request.path!r}; POST to one of " + ", ".join(PATHS)
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}; use POST"
            else:
                raise
            self._note_refusal(request, exc.status, message)
            return _error_reply(request, exc.status, message, _allow_header(exc))
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def _authorize(self, request: web.Request) -> None:
        token = self.config.token
        if token is None:
            return
        expected = f"Bearer {token.get_secret_value()}".encode()
        got = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(got, expected):
            raise HttpError(
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' with the "
                "http source's `token`",
                {"WWW-Authenticate": 'Bearer realm="revopipe"'},
            )

    def _note_refusal(self, request: web.Request, status: int, message: str) -> None:
        # A misbehaving client must not flood the log: one line per 10 s at most.
        now = time.monotonic()
        if now - self._last_log < 10:
            self._suppressed += 1
            return
        more = f" (and {self._suppressed} more refusals)" if self._suppressed else ""
        self.log.info(
            "refused %s %s from %s: %d %s%s",
            request.method,
            request.path,
            request.remote,
            status,
            message,
            more,
        )
        self._last_log, self._suppressed = now, 0

    # -- bodies ----------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes:
        limit = self.config.max_body
        too_big = (
            f"request body larger than max_body = {limit} bytes; split it into smaller "
            "requests (or raise the http source's `max_body`)"
        )
        if request.content_length is not None and request.content_length > limit:
            raise HttpError(413, too_big)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise HttpError(
                415, f"unsupported Content-Encoding {encoding!r}; send gzip or identity"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise HttpError(413, too_big)
            chunks.append(chunk)
        body = b"".join(chunks)
        if encoding == "gzip":
            body = _gunzip(body, limit, too_big)
        return body

    # -- endpoints -------------------------------------------------------------------

    async def _otlp(self, request: web.Request) -> web.StreamResponse:
        signal = OTLP_PATHS[request.path]
        ctype = request.content_type
        if ctype == PROTOBUF:
            fmt: Format = "protobuf"
        elif ctype == JSON:
            fmt = "json"
        else:
            raise HttpError(
                415,
                f"unsupported Content-Type {ctype!r} for OTLP; send {PROTOBUF} or {JSON}",
            )
        body = await self._body(request)
        try:
            req = (
                otlp.parse_protobuf(body, signal)
                if fmt == "protobuf"
                else otlp.parse_json(body, signal)
            )
        except otlp.OtlpDecodeError as exc:
            raise HttpError(400, str(exc)) from None
        if signal == "metrics":
            # Decode, hand over and keep the decoder's running totals as one step: a
            # concurrent request on the same series must see the totals this one leaves.
            async with self._otlp_lock:
                decoded = self._decoder.metrics(req)
                await self._hand_over(Batch(decoded.metrics))
                self._decoder.commit(decoded)
            rejected, errors = decoded.rejected, decoded.errors
        else:
            spans = self._decoder.spans(req)
            await self._hand_over(Batch(events=spans.spans))
            rejected, errors = spans.rejected, spans.errors
        if rejected:
            self.context.stats.dropped += rejected
        message = "; ".join(errors)
        return web.Response(
            body=otlp.export_response(signal, rejected, message, fmt == "json"),
            content_type=PROTOBUF if fmt == "protobuf" else JSON,
        )

    async def _ingest(self, request: web.Request) -> web.StreamResponse:
        ctype = request.content_type
        if "Content-Type" in request.headers and ctype not in JSONLINES_TYPES:
            raise HttpError(
                415,
                f"unsupported Content-Type {ctype!r} for {INGEST_PATH}; send JSON lines as "
                "application/x-ndjson",
            )
        body = await self._body(request)
        try:
            metrics, events = parse_lines(body, now_ns())
        except IngestError as exc:
            raise HttpError(400, str(exc), details={"line": exc.line, "key": exc.key}) from None
        batch = Batch(metrics, tuple(events))
        await self._hand_over(batch)
        return web.json_response({"accepted": len(batch)})

    async def _hand_over(self, batch: Batch) -> None:
        if not len(batch):
            return
        assert self._emit is not None
        timeout = self.config.accept_timeout
        try:
            with anyio.fail_after(timeout):
                # A timeout cancels the send only while the batch still waits for room:
                # anyio does not cancel a task whose wait has already been satisfied, so a
                # 503 means the batch was not taken and the client's retry duplicates
                # nothing. (Fanned out to several consumers, a send is shielded and waits
                # for all of them instead.)
                await self._emit(batch)
        except TimeoutError:
            raise HttpError(
                503,
                f"the pipeline did not accept the request within accept_timeout = {timeout}s "
                "(backpressure); retry later",
                {"Retry-After": str(math.ceil(self.config.retry_after))},
            ) from None


def _gunzip(body: bytes, limit: int, too_big: str) -> bytes:
    out: list[bytes] = []
    size = 0
    rest = body
    try:
        while rest:  # a gzip stream may hold several members
            d = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            # At most limit + 1 bytes: a small bomb cannot grow past max_body.
            part = d.decompress(rest, limit + 1 - size)
            size += len(part)
            if size > limit:
                raise HttpError(413, "decompressed " + too_big)
            if not d.eof:
                raise HttpError(400, "the gzip body is truncated")
            out.append(part)
            rest = d.unused_data
    except zlib.error as exc:
        raise HttpError(400, f"Content-Encoding is gzip but the body is not: {exc}") from None
    return b"".join(out)


def _allow_header(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


def _error_reply(
    request: web.Request,
    status: int,
    message: str,
    headers: dict[str, str],
    details: dict[str, Any] | None = None,
) -> web.Response:
    if request.path in OTLP_PATHS and request.method == "POST":
        # OTLP/HTTP: a google.rpc.Status, in the request's encoding.
        as_json = request.content_type != PROTOBUF
        return web.Response(
            status=status,
            body=otlp.status_body(status, message, as_json),
            content_type=JSON if as_json else PROTOBUF,
            headers=headers,
        )
    body: dict[str, Any] = {"error": message, **(details or {})}
    return web.json_response(body, status=status, headers=headers)
