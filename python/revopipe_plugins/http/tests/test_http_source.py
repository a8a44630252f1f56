"""The http source on a real loopback server: JSON lines and OTLP/HTTP in, every refusal
with a clear message and nothing emitted, backpressure answered with 503, drain finishes
what is in flight."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.encode import batch_jsonl
from revopipe.events import MetricKind, Span
from revopipe.testing import make
from revopipe.wire.otlp import parse_status
from revopipe_plugins.http.source import HttpSource

pytestmark = pytest.mark.anyio

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"
CHILD = "00f067aa0ba902b7"


class Server:
    def __init__(self, source: HttpSource, batches: list[Batch]) -> None:
        self.source = source
        self.batches = batches
        assert source.bound is not None
        self.url = "http://{}:{}".format(*source.bound)

    def metrics(self) -> list[Any]:
        return [m for b in self.batches for m in b.metrics]

    def events(self) -> list[Any]:
        return [e for b in self.batches for e in b.events]


@asynccontextmanager
async def serving(
    tmp_path: Path,
    config: dict[str, Any] | None = None,
    emit: Callable[[Batch], Awaitable[None]] | None = None,
) -> AsyncIterator[Server]:
    batches: list[Batch] = []

    async def keep(batch: Batch) -> None:
        batches.append(batch)

    source = make(HttpSource, {"address": "127.0.0.1:0", **(config or {})}, tmp_path)
    await source.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(source.run, emit or keep)
            with anyio.fail_after(10):
                await source.listening.wait()
            yield Server(source, batches)
            tg.cancel_scope.cancel()
    finally:
        await source.stop()


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


# ------------------------------------------------------------------------- JSON lines


async def test_json_lines_are_emitted_exactly(tmp_path: Path) -> None:
    b = MetricBatchBuilder(default_ts=1_764_385_200_000_000_000)
    b.add("system.cpu.utilization", 0.125, MetricKind.GAUGE, "1", {"cpu": "0"})
    b.add("app.requests", 42, MetricKind.COUNTER, "{request}", {"route": "/a", "method": "GET"})
    b.add("http.server.request.duration", 0.0123, MetricKind.HISTOGRAM, "s", {})
    b.add("app.users", 7, MetricKind.SET, "1", {})
    b.add("odd", math.nan, MetricKind.GAUGE, "1", {})
    span = Span("GET /a", TRACE, CHILD, 10, 25, ROOT, "error", (("http.route", "/a"),))
    sent = Batch(b.build(), (span,))
    body = batch_jsonl(sent)  # what the jsonl sink writes
    body += b'\n{"name": "no.timestamp", "value": 1}\n'
    async with serving(tmp_path) as srv, httpx.AsyncClient() as client:
        r = await client.post(
            srv.url + "/ingest", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 7}
    [got] = srv.batches
    rows = list(got.metrics)
    assert [(m.name, m.kind, m.unit, m.timestamp, m.tags) for m in rows[:5]] == [
        (m.name, m.kind, m.unit, m.timestamp, m.tags) for m in sent.metrics
    ]
    assert [m.value for m in rows[:4]] == [0.125, 42.0, 0.0123, 7.0]
    assert math.isnan(rows[4].value)
    # a row without a timestamp is stamped on arrival
    assert rows[5].name == "no.timestamp" and rows[5].timestamp > sent.metrics.timestamps[0]
    assert got.events == (span,)


async def test_gzip_body_is_accepted(tmp_path: Path) -> None:
    body = gzip.compress(b'{"name": "a", "value": 1, "kind": "counter"}\n' * 100)
    async with serving(tmp_path) as srv, httpx.AsyncClient() as client:
        r = await client.post(
            srv.url + "/ingest",
            content=body,
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )
        assert r.status_code == 200, r.text
    assert len(srv.metrics()) == 100


@pytest.mark.parametrize(
    ("body", "line", "key", "words"),
    [
        (b'{"name": "a", "value": 1}\n{"name": "b", "value": 2', 2, None, "not valid JSON"),
        (b'{"name": "a", "value": 1}\n\n{"name": "b", "value": "x"}\n', 3, "value", "number"),
        (b'{"name": "a", "value": 1, "tag": {}}\n', 1, "tag", "unknown key"),
        (b'{"name": "a", "value": 1, "kind": "timer"}\n', 1, "kind", "unknown kind"),
        (b'{"name": "a", "value": 1, "timestamp": "now"}\n', 1, "timestamp", "nanoseconds"),
        (b'{"name": "a", "value": 1, "tags": {"k": [1]}}\n', 1, "tags.k", "expected a string"),
        (b'{"value": 1}\n', 1, "name", "required"),
        (b"[1, 2]\n", 1, None, "expected a JSON object"),
        (b'{"type": "alert"}\n', 1, "type", "unsupported type"),
        (b'{"type": "histogram_snapshot", "name": "h"}\n', 1, "start_ns", "required"),
        (b'{"type": "span", "name": "s", "trace_id": "xyz"}\n', 1, "trace_id", "hex digits"),
        (b"{}\n\xff\xfe\x00garbage\n", 2, None, "not UTF-8"),
    ],
)
async def test_bad_line_is_400_naming_line_and_key_and_nothing_is_emitted(
    tmp_path: Path, body: bytes, line: int, key: str | None, words: str
) -> None:
    async with serving(tmp_path) as srv, httpx.AsyncClient() as client:
        r = await client.post(
            srv.url + "/ingest", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    assert r.status_code == 400
    err = r.json()
    assert (err["line"], err["key"]) == (line, key)
    assert f"line {line}" in err["error"] and words in err["error"]
    if key:
        assert repr(key) in err["error"]
    assert srv.batches == []


async def test_size_type_path_method_and_token_refusals(tmp_path: Path) -> None:
    config = {"max_body": "1KiB", "token": "s3cret-token"}
    auth = {"Authorization": "Bearer s3cret-token", "Content-Type": "application/x-ndjson"}
    line = b'{"name": "a", "value": 1}\n'
    async with serving(tmp_path, config) as srv, httpx.AsyncClient() as client:
        r = await client.post(srv.url + "/ingest", content=line * 100, headers=auth)
        assert r.status_code == 413 and "1024 bytes" in r.json()["error"]
        # a small gzip body that inflates past max_body is refused as well
        bomb = gzip.compress(line * 1000)
        assert len(bomb) < 1024
        r = await client.post(
            srv.url + "/ingest", content=bomb, headers={**auth, "Content-Encoding": "gzip"}
        )
        assert r.status_code == 413 and "decompressed" in r.json()["error"]

        # a chunked body (no Content-Length) is bounded too
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield line

        r = await client.post(srv.url + "/ingest", content=chunks(), headers=auth)
        assert r.status_code == 413
        r = await client.post(
            srv.url + "/ingest", content=line, headers={**auth, "Content-Type": "text/csv"}
        )
        assert r.status_code == 415 and "application/x-ndjson" in r.json()["error"]
        r = await client.post(
            srv.url + "/v1/metrics", content=b"{}", headers={**auth, "Content-Type": "text/csv"}
        )
        assert r.status_code == 415 and "application/x-protobuf" in r.text
        r = await client.post(srv.url + "/v2/metrics", content=line, headers=auth)
        assert r.status_code == 404 and "/v1/metrics" in r.json()["error"]
        r = await client.get(srv.url + "/ingest", headers=auth)
        assert r.status_code == 405 and "use POST" in r.json()["error"]
        assert "POST" in r.headers["Allow"]
        for bad in ({}, {"Authorization": "Bearer wrong"}):
            r = await client.post(
                srv.url + "/ingest",
                content=line,
                headers={"Content-Type": "application/x-ndjson", **bad},
            )
            assert r.status_code == 401 and "Bearer" in r.json()["error"]
            assert "s3cret-token" not in r.text
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert srv.batches == []
        r = await client.post(srv.url + "/ingest", content=line, headers=auth)
        assert r.status_code == 200
    assert len(srv.metrics()) == 1


async def test_token_is_secret_in_the_config(tmp_path: Path) -> None:
    source = make(HttpSource, {"token": "s3cret-token"}, tmp_path)
    assert "s3cret-token" not in repr(source.config)
    assert "s3cret-token" not in str(source.config.model_dump())


async def test_backpressure_beyond_accept_timeout_is_503_and_emits_nothing(
    tmp_path: Path,
) -> None:
    stuck = anyio.Event()
    emitted: list[Batch] = []

    async def full_pipeline(batch: Batch) -> None:
        await stuck.wait()  # the next edge never frees up
        emitted.append(batch)

    async with (
        serving(tmp_path, {"accept_timeout": "100ms"}, full_pipeline) as srv,
        httpx.AsyncClient() as client,
    ):
        r = await client.post(srv.url + "/ingest", content=b'{"name": "a", "value": 1}\n')
        assert r.status_code == 503
        assert int(r.headers["Retry-After"]) >= 1
        assert "accept_timeout" in r.json()["error"]
    assert emitted == []


async def test_drain_finishes_requests_in_flight(tmp_path: Path) -> None:
    emitted: list[Batch] = []
    entered = anyio.Event()

    async def slow(batch: Batch) -> None:
        entered.set()
        await anyio.sleep(0.3)
        emitted.append(batch)

    source = make(HttpSource, {"address": "127.0.0.1:0"}, tmp_path)
    await source.start()
    replies: list[httpx.Response] = []

    async def post(url: str) -> None:
        async with httpx.AsyncClient() as client:
            replies.append(await client.post(url, content=b'{"name": "a", "value": 1}\n'))

    async with anyio.create_task_group() as clients, anyio.create_task_group() as server:
        server.start_soon(source.run, slow)
        await source.listening.wait()
        assert source.bound is not None
        url = "http://{}:{}/ingest".format(*source.bound)
        clients.start_soon(post, url)
        await entered.wait()
        server.cancel_scope.cancel()  # the pipeline drains while the request is in flight
    await source.stop()
    assert [r.status_code for r in replies] == [200]
    assert len(emitted) == 1
    # and it no longer listens
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(url, content=b"{}")


async def test_address_in_use_is_a_clear_error(tmp_path: Path) -> None:
    async with serving(tmp_path) as srv:
        assert srv.source.bound is not None
        host, port = srv.source.bound
        other = make(HttpSource, {"address": f"{host}:{port}"}, tmp_path)
        await other.start()

        async def emit(batch: Batch) -> None:
            pass

        with pytest.raises(OSError, match="choose another `address`"):
            await other.run(emit)
        await other.stop()


def test_bad_address_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="host:port"):
        make(HttpSource, {"address": "4318"}, tmp_path)


# -------------------------------------------------------------------------------- OTLP


def metrics_request(delta_value: float = 5.0) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "checkout"), kv("host.name", "h1")])
    sm = rm.scope_metrics.add()
    sm.scope.name = "my.lib"
    m = sm.metrics.add(name="queue.depth", unit="{item}")
    m.gauge.data_points.add(time_unix_nano=1000, as_int=7, attributes=[kv("queue", "q1")])
    m = sm.metrics.add(name="requests", unit="{request}")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.sum.data_points.add(start_time_unix_nano=1, time_unix_nano=1000, as_double=120.0)
    m = sm.metrics.add(name="bytes.sent", unit="By")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    m.sum.data_points.add(start_time_unix_nano=900, time_unix_nano=1000, as_double=delta_value)
    m = sm.metrics.add(name="inflight", unit="{request}")
    m.sum.is_monotonic = False
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.sum.data_points.add(time_unix_nano=1000, as_int=-3)
    m = sm.metrics.add(name="latency", unit="s")
    m.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    m.histogram.data_points.add(
        start_time_unix_nano=900,
        time_unix_nano=1000,
        count=4,
        sum=1.5,
        min=0.1,
        max=0.9,
        explicit_bounds=[0.25, 0.5],
        bucket_counts=[1, 2, 1],
    )
    return req


def traces_request(bad_trace_id: bool = False) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "checkout"))
    ss = rs.scope_spans.add()
    ss.scope.name = "my.lib"
    ss.spans.add(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(ROOT),
        name="GET /cart",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=100,
        end_time_unix_nano=900,
        attributes=[kv("http.route", "/cart")],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom"),
    )
    ss.spans.add(
        trace_id=bytes.fromhex(TRACE)[: 8 if bad_trace_id else 16],
        span_id=bytes.fromhex(CHILD),
        parent_span_id=bytes.fromhex(ROOT),
        name="SELECT",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=200,
        end_time_unix_nano=300,
    )
    return req


def by_name(metrics: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in metrics:
        out.setdefault(m.name, []).append(m)
    return out


async def test_otlp_protobuf_metrics_map_to_revopipe_kinds(tmp_path: Path) -> None:
    async with serving(tmp_path) as srv, httpx.AsyncClient() as client:
        for delta in (5.0, 7.0):
            r = await client.post(
                srv.url + "/v1/metrics",
                content=gzip.compress(metrics_request(delta).SerializeToString()),
                headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            )
            assert r.status_code == 200
            assert r.headers["Content-Type"] == "application/x-protobuf"
            resp = ExportMetricsServiceResponse.FromString(r.content)
            assert not resp.HasField("partial_success")
    got = by_name(srv.metrics())
    base = {"service.name": "checkout", "host.name": "h1", "otel.scope.name": "my.lib"}
    [depth, _] = got["queue.depth"]
    assert (depth.kind, depth.value, depth.unit, depth.timestamp) == (
        MetricKind.GAUGE,
        7.0,
        "{item}",
        1000,
    )
    assert depth.tag_dict == {**base, "queue": "q1"}
    assert [(m.kind, m.value) for m in got["requests"]] == [(MetricKind.COUNTER, 120.0)] * 2
    # delta → running total, from a 0 baseline
    assert [(m.kind, m.value) for m in got["bytes.sent"]] == [
        (MetricKind.COUNTER, 0.0),
        (MetricKind.COUNTER, 5.0),
        (MetricKind.COUNTER, 12.0),
    ]
    assert [(m.kind, m.value) for m in got["inflight"]] == [(MetricKind.GAUGE, -3.0)] * 2
    assert [m.value for m in got["latency.count"]] == [0.0, 4.0, 8.0]
    assert [m.value for m in got["latency.sum"]] == [0.0, 1.5, 3.0]
    buckets = {(m.tag_dict["le"], m.value) for m in got["latency.bucket"]}
    assert buckets == {
        ("0.25", 0.0),
        ("0.25", 1.0),
        ("0.25", 2.0),
        ("0.5", 0.0),
        ("0.5", 3.0),
        ("0.5", 6.0),
        ("+Inf", 0.0),
        ("+Inf", 4.0),
        ("+Inf", 8.0),
    }
    assert [m.value for m in got["latency.max"]] == [0.9, 0.9]


async def test_otlp_rejected_request_leaves_running_totals_untouched(tmp_path: Path) -> None:
    """A 503 (nothing accepted) must not move the delta running totals: the client's
    retry then counts once."""
    gate = {"open": False}
    kept: list[Batch] = []

    async def sometimes(batch: Batch) -> None:
        if not gate["open"]:
            await anyio.sleep_forever()
        kept.append(batch)

    body = metrics_request(5.0).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    async with (
        serving(tmp_path, {"accept_timeout": "100ms"}, sometimes) as srv,
        httpx.AsyncClient() as client,
    ):
        r = await client.post(srv.url + "/v1/metrics", content=body, headers=headers)
        assert r.status_code == 503
        gate["open"] = True
        r = await client.post(srv.url + "/v1/metrics", content=body, headers=headers)
        assert r.status_code == 200
    sent = [m.value for b in kept for m in b.metrics if m.name == "bytes.sent"]
    assert sent == [0.0, 5.0]


async def test_otlp_json_metrics_and_traces_with_hex_ids(tmp_path: Path) -> None:
    metrics_json = json_format.MessageToJson(metrics_request())
    traces = json.loads(json_format.MessageToJson(traces_request()))
    # OTLP/JSON carries ids as hex, not protobuf JSON's base64
    for sp in traces["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in sp:
                sp[key] = __import__("base64").b64decode(sp[key]).hex()
    traces["unknownField"] = 1  # ignored, as the specification asks
    async with serving(tmp_path) as srv, httpx.AsyncClient() as client:
        r = await client.post(
            srv.url + "/v1/metrics",
            content=metrics_json,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        assert r.json() == {}
        r = await client.post(srv.url + "/v1/traces", json=traces)
        assert r.status_code == 200, r.text
    assert len(by_name(srv.metrics())["queue.depth"]) == 1
    spans = [e for e in srv.events() if isinstance(e, Span)]
    assert spans == expected_spans()


def expected_spans() -> list[Span]:
    base = (("otel.scope.name", "my.lib"), ("service.name", "checkout"))
    return [
        Span(
            "GET /cart",
            TRACE,
            ROOT,
            100,
            900,
            None,
            "error",
            tuple(
                sorted(
                    (
                        *base,
                        ("http.route", "/cart"),
                        ("span.kind", "server"),
                        ("otel.status_description", "boom"),
                    )
                )
            ),
        ),
        Span(
            "SELECT",
            TRACE,
            CHILD,
            200,
            300,
            ROOT,
            "unset",
            tuple(sorted((*base, ("span.kind", "client")))),
        ),
    ]


async def test_otlp_protobuf_traces_and_partial_success(tmp_path: Path) -> None:
    async with serving(tmp_path) as srv, httpx.AsyncClient() as client:
        r = await client.post(
            srv.url + "/v1/traces",
            content=traces_request().SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 200
        assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
        r = await client.post(
            srv.url + "/v1/traces",
            content=traces_request(bad_trace_id=True).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 200
        ps = ExportTraceServiceResponse.FromString(r.content).partial_success
        assert ps.rejected_spans == 1 and "trace_id" in ps.error_message
    spans = [e for e in srv.events() if isinstance(e, Span)]
    assert spans == [*expected_spans(), expected_spans()[0]]
    assert srv.source.context.stats.dropped == 1


async def test_otlp_malformed_bodies_are_400_with_a_status(tmp_path: Path) -> None:
    async with serving(tmp_path) as srv, httpx.AsyncClient() as client:
        r = await client.post(
            srv.url + "/v1/metrics",
            content=b"\xff\xff\xff\xff",
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 400
        status = parse_status(r.content)
        assert status is not None and status[0] == 3 and "protobuf" in status[1]
        r = await client.post(
            srv.url + "/v1/traces",
            content=b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "not a hex id" in r.json()["message"]
        r = await client.post(
            srv.url + "/v1/traces",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    assert srv.batches == []


async def test_opentelemetry_sdk_exporters_deliver(tmp_path: Path) -> None:
    """The real OpenTelemetry SDK's OTLP/HTTP exporters talk to the source."""
    exporter_mod = pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    metric_mod = pytest.importorskip("opentelemetry.exporter.otlp.proto.http.metric_exporter")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    async with serving(tmp_path) as srv:
        resource = Resource.create({"service.name": "sdk-app"})
        tracer_provider = TracerProvider(resource=resource)
        span_exporter = exporter_mod.OTLPSpanExporter(endpoint=srv.url + "/v1/traces")
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        metric_exporter = metric_mod.OTLPMetricExporter(endpoint=srv.url + "/v1/metrics")

        def work() -> Any:
            tracer = tracer_provider.get_tracer("checkout")
            with (
                tracer.start_as_current_span("parent") as parent,
                tracer.start_as_current_span("child"),
            ):
                pass
            counter = meter_provider.get_meter("checkout").create_counter("orders")
            counter.add(3, {"region": "eu"})
            data = reader.get_metrics_data()
            result = metric_exporter.export(data)
            tracer_provider.shutdown()
            return parent.get_span_context(), result

        ctx, result = await anyio.to_thread.run_sync(work)
        assert result.name == "SUCCESS"
    spans = {e.name: e for e in srv.events() if isinstance(e, Span)}
    assert set(spans) == {"parent", "child"}
    assert spans["child"].parent_span_id == spans["parent"].span_id == f"{ctx.span_id:016x}"
    assert spans["parent"].trace_id == f"{ctx.trace_id:032x}"
    assert dict(spans["parent"].attributes)["service.name"] == "sdk-app"
    [orders] = by_name(srv.metrics())["orders"][-1:]
    assert (orders.kind, orders.value, orders.tag_dict["region"]) == (MetricKind.COUNTER, 3.0, "eu")
