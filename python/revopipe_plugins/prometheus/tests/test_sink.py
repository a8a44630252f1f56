"""The prometheus sink over HTTP on loopback: content negotiation, paths, a busy port,
config errors, bad snapshots, and a pipeline from the service's instruments to /metrics."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from revopipe import Batch, Pipeline, _core, metrics
from revopipe.batch import MetricBatchBuilder
from revopipe.config import ConfigInvalid
from revopipe.config.address import parse_address
from revopipe.events import HistogramSnapshot, MetricKind
from revopipe.testing import make
from revopipe.wire.prometheus import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, Format
from revopipe_plugins.prometheus.sink import PrometheusSink

pytestmark = pytest.mark.anyio

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def batch() -> Batch:
    b = MetricBatchBuilder()
    b.add("app.requests", 12, MetricKind.COUNTER, "{request}", {"route": "/a"})
    b.add("queue.depth", 4, MetricKind.GAUGE, "1")
    return Batch(b.build())


async def started(tmp_path: Path, **config: object) -> PrometheusSink:
    sink = make(PrometheusSink, {"inputs": ["x"], "listen": "127.0.0.1:0", **config}, tmp_path)
    await sink.start()
    return sink


async def test_serves_text_by_default_and_openmetrics_on_request(tmp_path: Path) -> None:
    sink = await started(tmp_path)
    try:
        await sink.write(batch())
        url = f"http://127.0.0.1:{sink.port}/metrics"
        async with httpx.AsyncClient() as client:
            plain = await client.get(url)
            om = await client.get(url, headers={"Accept": PROMETHEUS_ACCEPT})
            missing = await client.get(f"http://127.0.0.1:{sink.port}/other")
    finally:
        await sink.stop()
    assert plain.status_code == 200
    assert plain.headers["Content-Type"] == TEXT_CONTENT_TYPE
    text = {s.name: s.value for f in parse_text(plain.text) for s in f.samples}
    assert text["app_requests_total"] == 12
    assert text["queue_depth"] == 4
    assert om.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    assert om.text.endswith("# EOF\n")
    fams = {f.name: f.type for f in parse_openmetrics(om.text)}
    assert fams["app_requests"] == "counter"
    assert missing.status_code == 404


async def test_custom_path_and_buckets(tmp_path: Path) -> None:
    sink = await started(tmp_path, path="/prom", buckets=[0.1, 1.0])
    try:
        b = MetricBatchBuilder()
        for v in (0.05, 0.5, 5.0):
            b.add("lat", v, MetricKind.HISTOGRAM, "s")
        await sink.write(Batch(b.build()))
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"http://127.0.0.1:{sink.port}/prom")
    finally:
        await sink.stop()
    buckets = {
        s.labels["le"]: s.value
        for f in parse_text(resp.text)
        for s in f.samples
        if s.name == "lat_seconds_bucket"
    }
    assert buckets == {"0.1": 1, "1.0": 2, "+Inf": 3}


async def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    first = await started(tmp_path)
    try:
        second = make(
            PrometheusSink, {"inputs": ["x"], "listen": f"127.0.0.1:{first.port}"}, tmp_path
        )
        with pytest.raises(OSError, match=r"cannot listen on .*set `listen` to a free"):
            await second.start()
        await second.stop()
    finally:
        await first.stop()


async def test_a_bad_snapshot_is_dropped_and_counted_the_rest_is_applied(
    tmp_path: Path,
) -> None:
    sink = await started(tmp_path)
    try:
        bad = HistogramSnapshot("lat", "s", 0, 1, 3, 1.0, 0.1, 0.5, "garbage", 1e-6)
        await sink.write(batch().replace(events=(bad,)))
        text = sink.exposition.render(Format.TEXT).decode()
    finally:
        await sink.stop()
    assert sink.context.stats.dropped == 1
    assert "queue_depth 4.0" in text
    assert "lat_seconds" not in text


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as err:
        Pipeline.from_dict(
            {
                "sources": {"g": {"type": "generate", "count": 1}},
                "sinks": {
                    "p": {
                        "type": "prometheus",
                        "inputs": ["g"],
                        "listen": "localhost",
                        "path": "metrics",
                        "buckets": [1, 1],
                        "expire_after": "soon",
                    }
                },
            }
        )
    text = err.value.render()
    for key in ("listen", "path", "buckets", "expire_after"):
        assert f"sinks.p.{key}" in text


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        (":9464", ("", 9464)),
        ("localhost:0", ("127.0.0.1", 0)),
    ],
)
def test_listen_addresses(listen: str, expected: tuple[str, int]) -> None:
    assert parse_address(listen) == expected


async def test_instruments_through_a_pipeline_to_metrics(tmp_path: Path) -> None:
    _core.reset_instruments()
    hits = metrics.counter("app.requests", "{request}", {"route": "/users"})
    lat = metrics.histogram("http.server.request.duration", "s", {"route": "/users"})
    hits.inc(3)
    for v in (0.003, 0.04, 0.04, 2.0):
        lat.record(v)
    port = free_port()
    p = Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"app": {"type": "app", "interval": "50ms"}},
            "sinks": {
                "prom": {"type": "prometheus", "inputs": ["app"], "listen": f"127.0.0.1:{port}"}
            },
        }
    )
    got: dict[str, float] = {}
    async with p.running(), httpx.AsyncClient() as client:
        with anyio.fail_after(10):
            while got.get("http_server_request_duration_seconds_count") != 4:
                await anyio.sleep(0.05)
                try:
                    resp = await client.get(f"http://127.0.0.1:{port}/metrics")
                except httpx.TransportError:
                    continue
                got = {
                    s.name + s.labels.get("le", ""): s.value
                    for f in parse_text(resp.text)
                    for s in f.samples
                }
    _core.reset_instruments()
    assert got["app_requests_total"] == 3
    assert got["http_server_request_duration_seconds_bucket0.005"] == 1
    assert got["http_server_request_duration_seconds_bucket0.05"] == 3
    assert got["http_server_request_duration_seconds_bucket+Inf"] == 4
    assert got["http_server_request_duration_seconds_sum"] == pytest.approx(2.083)
