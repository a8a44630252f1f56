"""The otlp sink against a real loopback receiver that decodes with opentelemetry-proto:
what arrives is right, throttling and outages are retried without loss or duplicates,
an endpoint that stays down ends in the dead-letter file, not in silence."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from revopipe import Pipeline, _core
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Exemplar, HistogramSnapshot, MetricKind, Span
from revopipe.testing import make
from revopipe.wire.otlp import status_body
from revopipe_plugins.otlp.sink import OtlpExportError, OtlpSink

pytestmark = pytest.mark.anyio

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"
CHILD = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP receiver: answers from `script` (status, headers) in turn, then 200;
    keeps every decoded request it answered 200 in `accepted`."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.attempts: list[tuple[str, float, bytes]] = []
        self.accepted: dict[str, list[Any]] = {"metrics": [], "traces": []}
        self.headers: list[dict[str, str]] = []
        self.down: set[str] = set()
        """Signals answered 503 (after the script)."""
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        signal = request.match_info["signal"]
        body = await request.read()  # aiohttp inflates a gzip body itself
        self.headers.append(dict(request.headers))
        self.attempts.append((signal, time.monotonic(), body))
        if self.script or signal in self.down:
            status, headers = self.script.pop(0) if self.script else (503, {})
            return web.Response(
                status=status,
                headers=headers,
                body=status_body(status, f"scripted {status}", as_json=False),
                content_type="application/x-protobuf",
            )
        cls = ExportMetricsServiceRequest if signal == "metrics" else ExportTraceServiceRequest
        self.accepted[signal].append(cls.FromString(body))
        resp = (
            ExportMetricsServiceResponse() if signal == "metrics" else ExportTraceServiceResponse()
        )
        return web.Response(body=resp.SerializeToString(), content_type="application/x-protobuf")


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/v1/{signal}", r.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    r.url = f"http://{host}:{port}"
    try:
        yield r
    finally:
        await runner.cleanup()


def snapshot() -> HistogramSnapshot:
    _core.reset_instruments()
    h = _core.histogram("http.server.request.duration", "s", (("route", "/cart"),))
    for v in (0.003, 0.004, 0.02, 0.3, 0.3, 3.0):
        h.record(v)
    [r] = [x for x in _core.collect_instruments() if x["kind"] == 2]
    snap = HistogramSnapshot.from_core(r, 1_000, 2_000)
    return dataclasses.replace(snap, exemplars=(Exemplar(3.0, TRACE, ROOT, 1_500),))


def sample_batch() -> Batch:
    b = MetricBatchBuilder(default_ts=5_000)
    b.add("app.requests", 10, MetricKind.COUNTER, "{request}", {"route": "/a"})
    b.add("app.requests", 15, MetricKind.COUNTER, "{request}", {"route": "/a"}, 6_000)
    b.add("system.memory.usage", 2.5e9, MetricKind.GAUGE, "By", {"service.name": "db"})
    root = Span("GET /cart", TRACE, ROOT, 100, 900, None, "error", (("span.kind", "server"),))
    child = Span("SELECT", TRACE, CHILD, 200, 300, ROOT, "ok", (("db.system", "sqlite"),))
    return Batch(b.build(), (snapshot(), root, child))


def attrs(kvs: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


def metrics_by_name(req: ExportMetricsServiceRequest) -> dict[str, tuple[dict[str, str], Any]]:
    return {
        m.name: (attrs(rm.resource.attributes), m)
        for rm in req.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


def sink_config(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": ["x"],
        "endpoint": url,
        "retry_initial": "10ms",
        "retry_max": "50ms",
        "service_name": "shop",
        "resource": {"deployment.environment.name": "test"},
        **extra,
    }


async def test_receiver_decodes_metrics_histograms_exemplars_and_spans(tmp_path: Path) -> None:
    async with receiver() as rx:
        sink = make(OtlpSink, sink_config(rx.url), tmp_path)
        await sink.start()
        try:
            await sink.write(sample_batch())
        finally:
            await sink.stop()
    assert rx.headers[0]["Content-Encoding"] == "gzip"
    assert rx.headers[0]["Content-Type"] == "application/x-protobuf"
    [mreq] = rx.accepted["metrics"]
    got = metrics_by_name(mreq)

    res, requests = got["app.requests"]
    assert res == {"service.name": "shop", "deployment.environment.name": "test"}
    assert requests.unit == "{request}"
    assert requests.sum.is_monotonic
    assert requests.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    points = requests.sum.data_points
    assert [(p.as_double, p.time_unix_nano) for p in points] == [(10, 5_000), (15, 6_000)]
    assert attrs(points[0].attributes) == {"route": "/a"}
    assert points[0].start_time_unix_nano == points[1].start_time_unix_nano <= 5_000

    # a row's service.name tag is its Resource's, not a point attribute
    res, mem = got["system.memory.usage"]
    assert res["service.name"] == "db"
    assert mem.gauge.data_points[0].as_double == 2.5e9
    assert attrs(mem.gauge.data_points[0].attributes) == {}

    _, dur = got["http.server.request.duration"]
    assert dur.histogram.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    [p] = dur.histogram.data_points
    assert (p.start_time_unix_nano, p.time_unix_nano) == (1_000, 2_000)
    assert (p.count, p.min, p.max) == (6, 0.003, 3.0)
    assert p.sum == pytest.approx(3.627)
    bounds = list(p.explicit_bounds)
    assert bounds[:3] == [0.005, 0.01, 0.025]
    expected = [0] * (len(bounds) + 1)
    for v in (0.003, 0.004, 0.02, 0.3, 0.3, 3.0):
        expected[next((i for i, b in enumerate(bounds) if v <= b), len(bounds))] += 1
    assert list(p.bucket_counts) == expected
    [ex] = p.exemplars
    assert (ex.trace_id.hex(), ex.span_id.hex(), ex.as_double, ex.time_unix_nano) == (
        TRACE,
        ROOT,
        3.0,
        1_500,
    )

    [treq] = rx.accepted["traces"]
    [rs] = treq.resource_spans
    assert attrs(rs.resource.attributes)["service.name"] == "shop"
    spans = {s.name: s for s in rs.scope_spans[0].spans}
    root, child = spans["GET /cart"], spans["SELECT"]
    assert root.trace_id.hex() == child.trace_id.hex() == TRACE
    assert child.parent_span_id.hex() == root.span_id.hex() == ROOT
    assert root.parent_span_id == b""
    assert root.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert root.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert child.status.code == trace_pb2.Status.STATUS_CODE_OK
    assert (root.start_time_unix_nano, root.end_time_unix_nano) == (100, 900)
    assert attrs(child.attributes) == {"db.system": "sqlite"}


async def test_counter_series_keep_their_start_time_across_writes(tmp_path: Path) -> None:
    async with receiver() as rx:
        sink = make(OtlpSink, sink_config(rx.url, compression="none"), tmp_path)
        await sink.start()
        try:
            for value, ts in ((5, 1_000), (9, 2_000), (2, 3_000)):
                b = MetricBatchBuilder(default_ts=ts)
                b.add("c", value, MetricKind.COUNTER)
                await sink.write(Batch(b.build()))
        finally:
            await sink.stop()
    assert "Content-Encoding" not in rx.headers[0]
    pts = [metrics_by_name(r)["c"][1].sum.data_points[0] for r in rx.accepted["metrics"]]
    starts = [p.start_time_unix_nano for p in pts]
    assert starts[0] == starts[1] <= 1_000
    # the total went down: a reset, so a new start after the previous point
    assert starts[2] == 2_000


async def test_503_and_429_then_200_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    async with receiver() as rx:
        rx.script = [(503, {}), (429, {"Retry-After": "1"}), (502, {})]
        sink = make(OtlpSink, sink_config(rx.url), tmp_path)
        await sink.start()
        try:
            await sink.write(sample_batch())
        finally:
            await sink.stop()
    # four attempts at the metrics (503, 429, 502, 200), then the traces once
    assert [a[0] for a in rx.attempts] == ["metrics"] * 4 + ["traces"]
    assert len({a[2] for a in rx.attempts[:4]}) == 1  # the same body each time
    # Retry-After: 1 was honoured
    assert rx.attempts[2][1] - rx.attempts[1][1] >= 0.9
    assert len(rx.accepted["metrics"]) == 1 and len(rx.accepted["traces"]) == 1
    assert sink.context.stats.retries == 3


async def test_other_4xx_is_not_retried_and_says_why(tmp_path: Path) -> None:
    async with receiver() as rx:
        rx.script = [(400, {})]
        sink = make(OtlpSink, sink_config(rx.url), tmp_path)
        await sink.start()
        try:
            with pytest.raises(OtlpExportError, match=r"HTTP 400: scripted 400; not retried"):
                await sink.write(sample_batch())
        finally:
            await sink.stop()
    assert len(rx.attempts) == 1


async def test_delivered_part_is_not_sent_again_when_the_batch_is_retried(
    tmp_path: Path,
) -> None:
    """Metrics went through, traces did not: the runtime's retry (on a fresh instance)
    sends the traces only."""
    batch = sample_batch()
    async with receiver() as rx:
        rx.down = {"traces"}
        sink = make(OtlpSink, sink_config(rx.url, max_retry_time="0s"), tmp_path)
        await sink.start()
        try:
            with pytest.raises(OtlpExportError, match="did not take the traces export"):
                await sink.write(batch)
        finally:
            await sink.stop()
        rx.down = set()
        fresh = OtlpSink(sink.config, sink.context)
        await fresh.start()
        try:
            await fresh.write(batch)
        finally:
            await fresh.stop()
    assert len(rx.accepted["metrics"]) == 1 and len(rx.accepted["traces"]) == 1


async def test_down_endpoint_retries_then_dead_letters(tmp_path: Path) -> None:
    async with receiver() as rx:
        url = rx.url  # the receiver is gone once the block ends: a closed port
    p = Pipeline.from_dict(
        {
            "pipeline": {
                "data_dir": str(tmp_path),
                "restart_backoff": "10ms",
                "max_restart_backoff": "20ms",
            },
            "sources": {
                "gen": {"type": "generate", "count": 30, "batch_size": 10, "interval": "0s"}
            },
            "sinks": {
                "out": {
                    "type": "otlp",
                    "inputs": ["gen"],
                    "endpoint": url,
                    "max_retry_time": "100ms",
                    "retry_initial": "10ms",
                    "max_retries": 1,
                }
            },
        }
    )
    await p.run()
    stats = {s["name"]: s for s in p.snapshot()}["out"]
    assert stats["dead_lettered"] == 30
    assert stats["retries"] >= 3  # the sink's own and the runtime's
    assert "did not take the metrics export" in stats["last_error"]
    assert "ConnectError" in stats["last_error"]
    dead = [json.loads(line) for line in (tmp_path / "dead_letter" / "out.jsonl").open()]
    assert len(dead) == 30
    assert sorted(d["event"]["value"] for d in dead) == sorted(float(i) for i in range(30))


def test_headers_are_secret_in_the_config(tmp_path: Path) -> None:
    sink = make(
        OtlpSink, sink_config("http://127.0.0.1:1", headers={"x-api-key": "k3y-value"}), tmp_path
    )
    assert "k3y-value" not in repr(sink.config)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"endpoint": "ftp://x"}, "http:// or https://"),
        ({"compression": "zstd"}, "gzip"),
        ({"buckets": {"s": [1.0, 0.5]}}, "strictly increase"),
    ],
)
def test_bad_config_is_refused(tmp_path: Path, extra: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make(OtlpSink, sink_config("http://127.0.0.1:1", **extra), tmp_path)
