"""The `otlp` sink: exports metrics and spans over OTLP/HTTP (protobuf) to an OpenTelemetry
Collector or any OTLP receiver.

A write returns once the receiver took the batch. Throttling and outages (429, 502, 503,
504, connection errors) are retried within the write with exponential backoff and jitter,
honouring Retry-After, for up to `max_retry_time`; then the write raises and the runtime
retries the batch `max_retries` times before dead-lettering it. Other 4xx replies cannot
succeed by retrying: the write raises at once with the receiver's message.
"""

from __future__ import annotations

import email.utils
import gzip
import itertools
import math
import random
import time
from collections import OrderedDict
from typing import Any, Literal

import anyio
import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import Field, SecretStr, field_validator

from revopipe import __version__
from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe.config import Duration, SinkConfig
from revopipe.wire import otlp

RETRYABLE = frozenset({429, 502, 503, 504})
_EXCERPT = 300


class OtlpConfig(SinkConfig):
    endpoint: str = Field(
        default="http://127.0.0.1:4318",
        description="base URL of the OTLP/HTTP receiver; /v1/metrics and /v1/traces are appended",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="extra request headers, e.g. an API key (values are treated as secrets)",
    )
    timeout: Duration = Field(default=10.0, gt=0, description="per request, e.g. '10s'")
    compression: Literal["gzip", "none"] = Field(
        default="gzip", description="request body compression: 'gzip' or 'none'"
    )
    max_retry_time: Duration = Field(
        default=30.0,
        ge=0,
        description="how long one write keeps retrying a throttled or unreachable receiver "
        "before failing (the runtime then retries, then dead-letters), e.g. '30s'",
    )
    retry_initial: Duration = Field(
        default=0.5, gt=0, description="first retry delay, doubled each retry, e.g. '500ms'"
    )
    retry_max: Duration = Field(
        default=10.0, gt=0, description="longest delay between retries, e.g. '10s'"
    )
    service_name: str = Field(
        default="revopipe",
        description="the Resource's service.name (a row's own service.name tag wins)",
    )
    resource: dict[str, str] = Field(
        default_factory=dict,
        description="more Resource attributes, e.g. { 'deployment.environment.name' = 'prod' }",
    )
    resource_keys: list[str] = Field(
        default_factory=lambda: list(otlp.DEFAULT_RESOURCE_KEYS),
        description="tag keys exported as Resource attributes rather than point attributes; "
        "a trailing * matches any rest, e.g. 'host.*'",
    )
    buckets: dict[str, list[float]] = Field(
        default_factory=dict,
        description="explicit histogram bucket bounds by unit, e.g. { s = [0.01, 0.1, 1] }; "
        "defaults exist for 's', 'ms' and 'By'",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        url = httpx.URL(v)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for unit, bounds in v.items():
            if not bounds or any(not math.isfinite(b) for b in bounds):
                raise ValueError(f"buckets for unit {unit!r}: give finite bounds, at least one")
            if any(a >= b for a, b in itertools.pairwise(bounds)):
                raise ValueError(f"buckets for unit {unit!r}: bounds must strictly increase")
        return v


class OtlpExportError(RuntimeError):
    """A write the receiver did not take; the runtime retries it, then dead-letters it."""


# Which parts of a batch already reached the receiver, by (component, batch id). A
# failed write makes the runtime retry the same batch on a fresh instance: the part
# already delivered (metrics or traces) must not be sent twice.
_delivered: OrderedDict[tuple[int, int], set[str]] = OrderedDict()
_MAX_REMEMBERED = 1024


class OtlpSink(Sink[OtlpConfig]):
    type_name = "otlp"
    Config = OtlpConfig
    description = "exports metrics and spans over OTLP/HTTP protobuf, with retries"

    async def start(self) -> None:
        cfg = self.config
        self._encoder = otlp.OtlpEncoder(
            resource={"service.name": cfg.service_name, **cfg.resource},
            resource_keys=cfg.resource_keys,
            bounds=cfg.buckets,
            scope_version=__version__,
        )
        headers = {k: v.get_secret_value() for k, v in cfg.headers.items()}
        headers["Content-Type"] = "application/x-protobuf"
        headers.setdefault("User-Agent", f"revopipe/{__version__}")
        if cfg.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(cfg.timeout))

    async def stop(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            await client.aclose()

    async def write(self, batch: Batch) -> None:
        key = (id(self.context.stats), batch.id)
        done = _delivered.get(key, set())
        if "metrics" not in done:
            encoded = self._encoder.metrics(batch)
            if encoded is not None:
                for w in encoded.warnings:
                    self.log.warning("%s", w)
                await self._export("metrics", encoded.request.SerializeToString())
                self._remember(key, done, "metrics")
        if "traces" not in done:
            spans = self._encoder.spans(batch)
            if spans is not None:
                if spans.rejected:
                    self.context.stats.dropped += len(spans.rejected)
                    shown = "; ".join(spans.rejected[:3])
                    self.log.warning("%d spans not exported: %s", len(spans.rejected), shown)
                if spans.spans:
                    await self._export("traces", spans.request.SerializeToString())
                self._remember(key, done, "traces")
        _delivered.pop(key, None)

    @staticmethod
    def _remember(key: tuple[int, int], done: set[str], part: str) -> None:
        done.add(part)
        _delivered[key] = done
        while len(_delivered) > _MAX_REMEMBERED:
            _delivered.popitem(last=False)

    async def _export(self, signal: otlp.Signal, payload: bytes) -> None:
        cfg = self.config
        url = f"{cfg.endpoint}/v1/{signal}"
        body = gzip.compress(payload, compresslevel=6) if cfg.compression == "gzip" else payload
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                resp = await self._client.post(url, content=body)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc or 'no detail'}"
            else:
                if resp.is_success:
                    self._partial_success(signal, resp)
                    return
                excerpt = _excerpt(resp)
                if resp.status_code not in RETRYABLE:
                    raise OtlpExportError(
                        f"otlp sink {self.context.name!r}: {url} refused the {signal} export "
                        f"with HTTP {resp.status_code}: {excerpt}; not retried (check "
                        "`endpoint` and `headers`)"
                    )
                reason = f"HTTP {resp.status_code}: {excerpt}"
                retry_after = _retry_after(resp.headers.get("Retry-After"))
            # Full jitter keeps many agents from retrying in lockstep after an outage.
            backoff = min(cfg.retry_initial * 2 ** (attempt - 1), cfg.retry_max)
            delay = random.uniform(backoff / 2, backoff)
            if retry_after is not None:
                delay = retry_after
            elapsed = time.monotonic() - started
            if elapsed + delay > cfg.max_retry_time:
                raise OtlpExportError(
                    f"otlp sink {self.context.name!r}: {url} did not take the {signal} export "
                    f"after {attempt} attempts over {elapsed:.1f}s (max_retry_time = "
                    f"{cfg.max_retry_time:g}s); last: {reason}. The batch is retried, then "
                    "dead-lettered"
                )
            self.context.stats.retries += 1
            self.log.debug("retrying %s in %.2fs after %s", url, delay, reason)
            await anyio.sleep(delay)

    def _partial_success(self, signal: otlp.Signal, resp: httpx.Response) -> None:
        if not resp.content or "protobuf" not in resp.headers.get("Content-Type", ""):
            return
        parsed: Any = (
            ExportMetricsServiceResponse() if signal == "metrics" else ExportTraceServiceResponse()
        )
        try:
            parsed.ParseFromString(resp.content)
        except Exception:  # a receiver's malformed success reply is still a success
            return
        ps = parsed.partial_success
        rejected = ps.rejected_data_points if signal == "metrics" else ps.rejected_spans
        if rejected or ps.error_message:
            # Per the OTLP specification a partial success is not retried.
            self.context.stats.dropped += rejected
            self.log.warning(
                "the receiver rejected %d %s: %s",
                rejected,
                "data points" if signal == "metrics" else "spans",
                ps.error_message or "(no message)",
            )


def _excerpt(resp: httpx.Response) -> str:
    text = ""
    if "protobuf" in resp.headers.get("Content-Type", ""):
        status = otlp.parse_status(resp.content)
        text = status[1] if status else ""
    text = (text or resp.text).strip().replace("\n", " ")
    if not text:
        return "(empty body)"
    return text[:_EXCERPT] + ("…" if len(text) > _EXCERPT else "")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
