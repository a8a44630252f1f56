"""OTLP encoding, revopipe vs the OpenTelemetry SDK's encoder, and the http source's
JSON-lines ingest over loopback.

    python benches/bench_otlp.py [--spans 20000] [--points 20000] [--rows 200000] [--repeat 5]

1. N spans → ExportTraceServiceRequest bytes: `revopipe.wire.otlp.OtlpEncoder.spans` from
   `Span` events vs `opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`
   from SDK `ReadableSpan`s (what `OTLPSpanExporter` runs per export).
2. N metric points → ExportMetricsServiceRequest bytes: `OtlpEncoder.metrics` from a
   columnar batch vs `..._internal.metrics_encoder.encode_metrics` from SDK `MetricsData`
   (what `OTLPMetricExporter` runs). Same names, attributes and values on both sides.
3. JSON lines POSTed to the http source on 127.0.0.1 (one client, bodies of --body-rows
   rows, responses awaited; a row counts once the source has emitted it), beside a bare
   aiohttp handler that only splits the body and json.loads each line (the floor for any
   Python server doing this job).

Each encoder figure is the median of --repeat runs; the inputs are built beforehand and
not timed. Requires opentelemetry-exporter-otlp-proto-common.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from aiohttp import web
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.encode import batch_jsonl
from revopipe.events import MetricKind, Span, make_tags
from revopipe.testing import make
from revopipe.wire.otlp import OtlpEncoder
from revopipe_plugins.http.source import HttpSource

T0 = 1_800_000_000_000_000_000
RESOURCE = {"service.name": "bench"}


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def span_inputs(n: int) -> tuple[Batch, list[ReadableSpan]]:
    ours: list[Span] = []
    sdk: list[ReadableSpan] = []
    resource = Resource.create(RESOURCE)
    scope = InstrumentationScope("bench")
    for i in range(n):
        trace_id = (i // 8 + 1) * 0x1000_0000_0000_0001
        span_id = i + 1
        parent = i if i % 8 else 0
        attrs = {"http.route": f"/r{i % 20}", "http.request.method": "GET", "n": str(i % 7)}
        start, end = T0 + i * 1000, T0 + i * 1000 + 500
        ours.append(
            Span(
                f"GET /r{i % 20}",
                f"{trace_id:032x}",
                f"{span_id:016x}",
                start,
                end,
                f"{parent:016x}" if parent else None,
                "ok",
                make_tags({**attrs, "span.kind": "server"}),
            )
        )
        ctx = SpanContext(trace_id, span_id, False, TraceFlags(1))
        parent_ctx = SpanContext(trace_id, parent, False, TraceFlags(1)) if parent else None
        sdk.append(
            ReadableSpan(
                name=f"GET /r{i % 20}",
                context=ctx,
                parent=parent_ctx,
                resource=resource,
                attributes=attrs,
                kind=SpanKind.SERVER,
                instrumentation_scope=scope,
                start_time=start,
                end_time=end,
            )
        )
    return Batch(events=tuple(ours)), sdk


def metric_inputs(n: int) -> tuple[Batch, MetricsData]:
    names = [f"app.metric.{j}" for j in range(100)]
    per_name = max(1, n // len(names))
    b = MetricBatchBuilder(default_ts=T0)
    sdk_metrics: list[Metric] = []
    for name in names:
        points: list[NumberDataPoint] = []
        for i in range(per_name):
            attrs = {"route": f"/r{i}", "method": "GET", "status": "2xx"}
            b.add(name, float(i), MetricKind.COUNTER, "1", make_tags(attrs), T0)
            points.append(NumberDataPoint(attrs, T0 - 10**9, T0, float(i)))
        sdk_metrics.append(
            Metric(name, None, "1", Sum(points, AggregationTemporality.CUMULATIVE, True))
        )
    data = MetricsData(
        [
            ResourceMetrics(
                Resource.create(RESOURCE),
                [ScopeMetrics(InstrumentationScope("bench"), sdk_metrics, "")],
                "",
            )
        ]
    )
    return Batch(b.build()), data


def encoders(args: argparse.Namespace) -> None:
    rows = []
    batch, sdk_spans = span_inputs(args.spans)
    enc = OtlpEncoder(resource=RESOURCE)

    def ours_spans() -> bytes:
        e = enc.spans(batch)
        assert e is not None
        return bytes(e.request.SerializeToString())

    size_ours, size_sdk = len(ours_spans()), len(encode_spans(sdk_spans).SerializeToString())
    t_ours = median_seconds(ours_spans, args.repeat)
    t_sdk = median_seconds(lambda: encode_spans(sdk_spans).SerializeToString(), args.repeat)
    rows.append(("spans", args.spans, t_ours, t_sdk, size_ours, size_sdk))

    mbatch, data = metric_inputs(args.points)
    n_points = len(mbatch.metrics)

    def ours_metrics() -> bytes:
        e = enc.metrics(mbatch)
        assert e is not None
        return bytes(e.request.SerializeToString())

    size_ours, size_sdk = len(ours_metrics()), len(encode_metrics(data).SerializeToString())
    t_ours = median_seconds(ours_metrics, args.repeat)
    t_sdk = median_seconds(lambda: encode_metrics(data).SerializeToString(), args.repeat)
    rows.append(("counter points", n_points, t_ours, t_sdk, size_ours, size_sdk))

    print("| encode to OTLP protobuf | n | revopipe /s | OTel SDK /s | ratio | bytes (ours/SDK) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for what, n, t_o, t_s, b_o, b_s in rows:
        print(
            f"| {what} | {n:,} | {n / t_o:,.0f} | {n / t_s:,.0f} | {t_s / t_o:.1f}x "
            f"| {b_o:,} / {b_s:,} |"
        )


async def post_all(url: str, body: bytes, posts: int) -> float:
    async with httpx.AsyncClient() as client:
        headers = {"Content-Type": "application/x-ndjson"}
        r = await client.post(url, content=body, headers=headers)  # warm up
        assert r.status_code == 200, r.text
        t0 = time.perf_counter()
        for _ in range(posts):
            r = await client.post(url, content=body, headers=headers)
            assert r.status_code == 200, r.text
        return time.perf_counter() - t0


async def ingest_http_source(body: bytes, posts: int) -> tuple[float, int]:
    emitted = 0

    async def emit(batch: Batch) -> None:
        nonlocal emitted
        emitted += len(batch)

    with tempfile.TemporaryDirectory() as d:
        source = make(HttpSource, {"address": "127.0.0.1:0", "max_body": "64MiB"}, Path(d))
        await source.start()
        task = asyncio.ensure_future(source.run(emit))
        await source.listening.wait()
        assert source.bound is not None
        seconds = await post_all("http://{}:{}/ingest".format(*source.bound), body, posts)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.stop()
    return seconds, emitted


async def ingest_bare_aiohttp(body: bytes, posts: int) -> float:
    async def handle(request: web.Request) -> web.Response:
        n = 0
        for line in (await request.read()).split(b"\n"):
            if line:
                json.loads(line)
                n += 1
        return web.json_response({"accepted": n})

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/ingest", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        return await post_all(f"http://{host}:{port}/ingest", body, posts)
    finally:
        await runner.cleanup()


def ingest(args: argparse.Namespace) -> None:
    b = MetricBatchBuilder(default_ts=T0)
    for i in range(args.body_rows):
        b.add("http.server.request.duration", i * 1e-4, MetricKind.HISTOGRAM, "s",
              make_tags({"route": f"/r{i % 20}", "method": "GET"}))  # fmt: skip
    body = batch_jsonl(Batch(b.build()))
    posts = max(1, args.rows // args.body_rows)
    t_ours, emitted = asyncio.run(ingest_http_source(body, posts))
    assert emitted == (posts + 1) * args.body_rows, emitted
    t_bare = asyncio.run(ingest_bare_aiohttp(body, posts))
    rows = posts * args.body_rows
    print(
        f"\n| JSON lines over loopback ({args.body_rows:,} rows, {len(body) / 1e6:.1f} MB per "
        "POST) | rows | rows/s |"
    )
    print("| --- | ---: | ---: |")
    for label, t in (
        ("revopipe `http` source `/ingest` (validated, emitted)", t_ours),
        ("bare aiohttp + `json.loads` per line (no validation)", t_bare),
    ):
        print(f"| {label} | {rows:,} | {rows / t:,.0f} |")
    print(f"\nratio revopipe / bare aiohttp: {t_bare / t_ours:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--body-rows", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {platform.machine()} python {platform.python_version()}, one thread\n")
    encoders(args)
    ingest(args)


if __name__ == "__main__":
    main()
