"""The otlp sink into the http source: one revopipe ships to another over OTLP/HTTP and
the receiving side gets the same values, spans and histogram counts; with the receiver
back-pressured (503s), every event still arrives exactly once, in order."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import anyio
import pytest

from revopipe import _core
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Exemplar, HistogramSnapshot, MetricKind, Span
from revopipe.testing import make
from revopipe_plugins.http.source import HttpSource
from revopipe_plugins.otlp.sink import OtlpSink
from tests.helpers import pipeline, values

pytestmark = pytest.mark.anyio

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"
CHILD = "00f067aa0ba902b7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sink_to_source_round_trip(tmp_path: Path) -> None:
    _core.reset_instruments()
    h = _core.histogram("http.server.request.duration", "s")
    for v in (0.003, 0.02, 0.3, 3.0):
        h.record(v)
    [r] = [x for x in _core.collect_instruments() if x["kind"] == 2]
    snap = dataclasses.replace(
        HistogramSnapshot.from_core(r, 1_000, 2_000), exemplars=(Exemplar(3.0, TRACE, ROOT, 1),)
    )
    b = MetricBatchBuilder(default_ts=5_000)
    b.add("app.requests", 10, MetricKind.COUNTER, "{request}", {"route": "/a"})
    b.add("system.memory.usage", 2.5e9, MetricKind.GAUGE, "By", {"host": "h1"})
    spans = (
        Span("GET /", TRACE, ROOT, 100, 900, None, "error", (("span.kind", "server"),)),
        Span("SELECT", TRACE, CHILD, 200, 300, ROOT, "ok", (("db.system", "sqlite"),)),
    )
    sent = Batch(b.build(), (snap, *spans))

    received: list[Batch] = []

    async def keep(batch: Batch) -> None:
        received.append(batch)

    source = make(HttpSource, {"address": "127.0.0.1:0"}, tmp_path, name="in")
    await source.start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(source.run, keep)
        await source.listening.wait()
        assert source.bound is not None
        url = "http://{}:{}".format(*source.bound)
        sink = make(OtlpSink, {"inputs": ["x"], "endpoint": url, "service_name": "shop"}, tmp_path)
        await sink.start()
        await sink.write(sent)
        await sink.stop()
        tg.cancel_scope.cancel()
    await source.stop()

    origin = {"service.name": "shop", "otel.scope.name": "revopipe", "otel.scope.version": "0.1.0"}
    rows = {(m.name, m.tags): m for batch in received for m in batch.metrics}

    def row(name: str, **tags: str) -> float:
        m = rows[(name, tuple(sorted({**origin, **tags}.items())))]
        return m.value

    assert row("app.requests", route="/a") == 10.0
    assert (
        rows[("app.requests", tuple(sorted({**origin, "route": "/a"}.items())))].kind
        is MetricKind.COUNTER
    )
    assert row("system.memory.usage", host="h1") == 2.5e9
    # the delta histogram window arrives as running totals: count, sum and buckets
    assert row("http.server.request.duration.count") == 4.0
    assert row("http.server.request.duration.sum") == pytest.approx(3.323)
    assert row("http.server.request.duration.bucket", le="0.005") == 1.0
    assert row("http.server.request.duration.bucket", le="0.025") == 2.0
    assert row("http.server.request.duration.bucket", le="0.5") == 3.0
    assert row("http.server.request.duration.bucket", le="+Inf") == 4.0
    assert row("http.server.request.duration.max") == 3.0
    got_spans = [e for batch in received for e in batch.events if isinstance(e, Span)]
    assert [dataclasses.replace(s, attributes=()) for s in got_spans] == [
        dataclasses.replace(s, attributes=()) for s in spans
    ]
    for got, want in zip(got_spans, spans, strict=True):
        assert dict(got.attributes) == {**origin, **dict(want.attributes)}


@pytest.mark.slow
async def test_backpressured_receiver_gets_everything_once_in_order(tmp_path: Path) -> None:
    port = free_port()
    collected: dict[str, list[Batch]] = {}
    receiver = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path / "rx")},
            "sources": {
                "in": {
                    "type": "http",
                    "address": f"127.0.0.1:{port}",
                    "accept_timeout": "10ms",
                    "retry_after": "0s",
                }
            },
            # a slow consumer behind a one-batch buffer: the source must answer 503s
            "sinks": {"out": {"type": "collect", "inputs": ["in"], "buffer": 1, "delay": 0.05}},
        },
        collected,
    )
    shipper = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path / "tx")},
            "sources": {
                "gen": {"type": "generate", "count": 1000, "batch_size": 50, "interval": "0s"}
            },
            "sinks": {
                "ship": {
                    "type": "otlp",
                    "inputs": ["gen"],
                    "endpoint": f"http://127.0.0.1:{port}",
                    "retry_initial": "10ms",
                    "retry_max": "50ms",
                }
            },
        },
        {},
    )
    async with receiver.running():
        await shipper.run()
        with anyio.fail_after(30):
            while len(values(collected.get("out", []))) < 1000:
                await anyio.sleep(0.02)
    stats = {s["name"]: s for s in shipper.snapshot()}
    assert stats["ship"]["dead_lettered"] == 0
    assert values(collected["out"]) == [float(i) for i in range(1000)]
