"""The prometheus_scrape source against real servers on loopback: prometheus_client's own
exporter (OpenMetrics), revopipe's prometheus sink (text), a down target, garbage, HTTP
errors, a slow target and an oversized body — all give up=0 and a logged error, never a
dead source."""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    start_http_server,
)

from revopipe import Batch, MetricKind
from revopipe.batch import MetricBatchBuilder
from revopipe.config import ConfigInvalid
from revopipe.events import Tags, make_tags
from revopipe.runtime.pipeline import Pipeline
from revopipe.testing import collect, make
from revopipe.wire.prometheus import Format, default_buckets, labels, metric_name
from revopipe_plugins.prometheus.exposition import Exposition
from revopipe_plugins.prometheus.sink import PrometheusSink
from revopipe_plugins.prometheus_scrape.parse import to_metrics, to_metrics_or_error
from revopipe_plugins.prometheus_scrape.source import PrometheusScrapeSource, instance_of

C, G = MetricKind.COUNTER, MetricKind.GAUGE
Rows = dict[tuple[str, Tags], tuple[MetricKind, float]]


def rows_of(batch: Batch) -> Rows:
    m = batch.metrics
    out: Rows = {}
    for name, kind, value, tags in zip(m.names, m.kinds, m.values, m.tags, strict=True):
        out[(name, tags)] = (MetricKind(kind), value)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source(tmp_path: Path, targets: list[str], **config: object) -> PrometheusScrapeSource:
    cfg = {"targets": targets, "interval": "1s", "timeout": "1s", **config}
    return make(PrometheusScrapeSource, cfg, tmp_path, name="scr")


async def scrape_once(src: PrometheusScrapeSource) -> Batch:
    await src.start()
    try:
        return await src.scrape_all()
    finally:
        await src.stop()


@pytest.fixture
def client_exporter() -> Iterator[str]:
    """prometheus_client's own HTTP exporter with one metric of each type."""
    reg = CollectorRegistry()
    Counter("jobs_processed", "jobs", ["queue"], registry=reg).labels("a").inc(5)
    Gauge("temperature_celsius", "temp", registry=reg).set(21.5)
    h = Histogram("req_seconds", "latency", buckets=[0.1, 1.0], registry=reg)
    h.observe(0.05)
    h.observe(0.5)
    Summary("payload_bytes", "size", registry=reg).observe(100)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def odd_server() -> AsyncIterator[str]:
    """Targets that misbehave, each on its own path."""

    async def garbage(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>this is not a metrics page</body></html>")

    async def error(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def slow(_: web.Request) -> web.Response:
        await anyio.sleep(1.5)
        return web.Response(text="late 1\n")

    async def big(_: web.Request) -> web.Response:
        return web.Response(text="x 1\n" * 10_000)

    async def inner_labels(_: web.Request) -> web.Response:
        return web.Response(text='m{job="inner",instance="elsewhere",k="v"} 1\n')

    async def openmetrics(_: web.Request) -> web.Response:
        body = (
            "# TYPE req_seconds histogram\n"
            'req_seconds_bucket{le="0.1"} 1 # {trace_id="abc"} 0.05 1700000000.5\n'
            'req_seconds_bucket{le="+Inf"} 2\n'
            "req_seconds_count 2\nreq_seconds_sum 0.6\n"
            "req_seconds_created 1700000000.0\n"
            "# TYPE hits counter\nhits_total 7 1700000001.25\n# EOF\n"
        )
        return web.Response(
            body=body.encode(),
            headers={"Content-Type": "application/openmetrics-text; version=1.0.0"},
        )

    app = web.Application()
    for path, handler in [
        ("/garbage", garbage),
        ("/error", error),
        ("/slow", slow),
        ("/big", big),
        ("/inner", inner_labels),
        ("/om", openmetrics),
    ]:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


pytestmark = pytest.mark.anyio


async def test_scrapes_prometheus_clients_exporter(tmp_path: Path, client_exporter: str) -> None:
    src = source(tmp_path, [client_exporter], labels={"env": "test"})
    rows = rows_of(await scrape_once(src))
    target = {"env": "test", "instance": instance_of(client_exporter), "job": "scr"}

    def tags(**extra: str) -> Tags:
        return make_tags({**target, **extra})

    assert rows[("jobs_processed_total", tags(queue="a"))] == (C, 5.0)
    assert rows[("temperature_celsius", tags())] == (G, 21.5)
    assert rows[("req_seconds_bucket", tags(le="0.1"))] == (C, 1.0)
    assert rows[("req_seconds_bucket", tags(le="1.0"))] == (C, 2.0)
    assert rows[("req_seconds_bucket", tags(le="+Inf"))] == (C, 2.0)
    assert rows[("req_seconds_count", tags())] == (C, 2.0)
    assert rows[("req_seconds_sum", tags())] == (C, pytest.approx(0.55))
    assert rows[("payload_bytes_count", tags())] == (C, 1.0)
    assert rows[("payload_bytes_sum", tags())] == (C, 100.0)
    assert not any(name.endswith("_created") for name, _ in rows)
    assert rows[("up", tags())] == (G, 1.0)
    kind, duration = rows[("scrape_duration_seconds", tags())]
    assert kind is G and duration > 0
    scraped = sum(1 for name, _ in rows if not name.startswith(("up", "scrape_")))
    assert rows[("scrape_samples_scraped", tags())] == (G, float(scraped))


async def test_scrapes_our_own_sink(tmp_path: Path) -> None:
    sink = make(PrometheusSink, {"inputs": ["x"], "listen": "127.0.0.1:0"}, tmp_path, name="p")
    await sink.start()
    try:
        b = MetricBatchBuilder()
        b.add("app.requests", 9, C, "{request}", {"route": "/"})
        b.add("system.cpu.utilization", 0.25, G, "1", {"cpu": "0"})
        for v in (0.004, 0.2):
            b.add("http.server.request.duration", v, MetricKind.HISTOGRAM, "s")
        await sink.write(Batch(b.build()))
        url = f"http://127.0.0.1:{sink.port}/metrics"
        rows = rows_of(await scrape_once(source(tmp_path, [url], job="self")))
    finally:
        await sink.stop()
    target = {"instance": instance_of(url), "job": "self"}
    assert rows[("app_requests_total", make_tags({**target, "route": "/"}))] == (C, 9.0)
    assert rows[("system_cpu_utilization_ratio", make_tags({**target, "cpu": "0"}))] == (G, 0.25)
    le = make_tags({**target, "le": "0.005"})
    assert rows[("http_server_request_duration_seconds_bucket", le)] == (C, 1.0)
    assert rows[("http_server_request_duration_seconds_count", make_tags(target))] == (C, 2.0)
    assert rows[("revopipe_prometheus_series", make_tags({**target, "sink": "p"}))][1] == 3
    assert rows[("up", make_tags(target))] == (G, 1.0)


async def test_openmetrics_responses_keep_sample_timestamps(
    tmp_path: Path, odd_server: str
) -> None:
    rows = rows_of(await scrape_once(source(tmp_path, [f"{odd_server}/om"])))
    names = {name for name, _ in rows}
    assert {"req_seconds_bucket", "req_seconds_count", "req_seconds_sum", "hits_total"} <= names
    assert "req_seconds_created" not in names
    src = source(tmp_path, [f"{odd_server}/om"])
    batch = await scrape_once(src)
    m = batch.metrics
    (ts,) = [t for n, t in zip(m.names, m.timestamps, strict=True) if n == "hits_total"]
    assert ts == 1_700_000_001_250_000_000


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/garbage", "not a valid exposition"),
        ("/error", "HTTP 500"),
        ("/slow", "timeout"),
        ("/big", "max_body"),
    ],
)
async def test_a_bad_target_is_down_with_a_clear_error(
    tmp_path: Path, odd_server: str, path: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = odd_server + path
    src = source(tmp_path, [url], timeout="500ms", max_body="16KiB")
    with caplog.at_level(logging.WARNING):
        rows = rows_of(await scrape_once(src))
    target = make_tags({"instance": instance_of(url), "job": "scr"})
    assert rows[("up", target)] == (G, 0.0)
    assert rows[("scrape_samples_scraped", target)] == (G, 0.0)
    assert len(rows) == 3  # up, scrape_duration_seconds, scrape_samples_scraped
    (record,) = [r for r in caplog.records if url in r.getMessage()]
    assert error in record.getMessage()
    assert "up=0" in record.getMessage()


async def test_a_down_target_never_stops_the_others(
    tmp_path: Path, client_exporter: str, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"http://127.0.0.1:{free_port()}/metrics"
    src = source(tmp_path, [down, client_exporter], interval="200ms", timeout="200ms")
    with caplog.at_level(logging.WARNING):
        batches = await collect(src, 1.0)
    assert len(batches) >= 2
    for batch in batches:
        rows = rows_of(batch)
        ups = {dict(t)["instance"]: v for (n, t), (_, v) in rows.items() if n == "up"}
        assert ups == {instance_of(down): 0.0, instance_of(client_exporter): 1.0}
    # one warning for the outage, not one per scrape
    assert len([r for r in caplog.records if down in r.getMessage()]) == 1


async def test_target_labels_and_honor_labels(tmp_path: Path, odd_server: str) -> None:
    url = f"{odd_server}/inner"
    inst = instance_of(url)
    (renamed,) = [n for n in rows_of(await scrape_once(source(tmp_path, [url]))) if n[0] == "m"]
    assert dict(renamed[1]) == {
        "exported_instance": "elsewhere",
        "exported_job": "inner",
        "instance": inst,
        "job": "scr",
        "k": "v",
    }
    honored = rows_of(await scrape_once(source(tmp_path, [url], honor_labels=True)))
    (kept,) = [n for n in honored if n[0] == "m"]
    assert dict(kept[1]) == {"instance": "elsewhere", "job": "inner", "k": "v"}


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as err:
        Pipeline.from_dict(
            {
                "sources": {
                    "a": {"type": "prometheus_scrape", "targets": ["localhost:9100"]},
                    "b": {
                        "type": "prometheus_scrape",
                        "targets": ["http://127.0.0.1:9100/metrics"],
                        "interval": "1s",
                        "timeout": "5s",
                    },
                    "c": {"type": "prometheus_scrape", "targets": []},
                },
                "sinks": {"out": {"type": "blackhole", "inputs": ["a", "b", "c"]}},
            }
        )
    text = err.value.render()
    assert "sources.a.targets: target 'localhost:9100' is not an http(s) URL" in text
    assert "timeout (5s) is longer than interval (1s)" in text
    assert "sources.c.targets" in text


def test_instance_labels() -> None:
    assert instance_of("http://127.0.0.1:9100/metrics") == "127.0.0.1:9100"
    assert instance_of("https://example.com/metrics") == "example.com:443"
    assert instance_of("http://[::1]:9090/metrics") == "[::1]:9090"


# -- parsing properties -----------------------------------------------------------------

names = st.text(min_size=1, max_size=12)
tag_sets = st.dictionaries(st.text(max_size=6), st.text(max_size=10), max_size=3)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(names, st.sampled_from([C, G]), tag_sets, st.floats(min_value=0)),
        max_size=15,
    ),
    st.sampled_from([Format.TEXT, Format.OPENMETRICS]),
)
def test_what_our_sink_renders_scrapes_back_to_the_same_values(
    rows: list[tuple[str, MetricKind, dict[str, str], float]], fmt: Format
) -> None:
    exp = Exposition(default_buckets, 300)
    b = MetricBatchBuilder()
    for name, kind, tags, value in rows:
        b.add(name, value, kind, "1", tags)
    exp.add_metrics(b.build())
    want: Rows = {}
    for name, kind, tags, value in rows:
        if (name, int(kind), "1", make_tags(tags)) in exp._keys:
            lbls = tuple(sorted((*labels(make_tags(tags)), ("job", "j"))))
            want[(metric_name(name, "1", kind), lbls)] = (kind, value)
    got = to_metrics(exp.render(fmt).decode(), fmt is Format.OPENMETRICS, {"job": "j"}, False, 1)
    got_rows = {
        (n, t): (MetricKind(k), v)
        for n, k, v, t in zip(got.names, got.kinds, got.values, got.tags, strict=True)
        if n != "revopipe_prometheus_series"
    }
    assert got_rows.keys() == want.keys()
    for k, (kind, value) in want.items():
        assert got_rows[k][0] is kind
        assert got_rows[k][1] == value or (math.isnan(value) and math.isnan(got_rows[k][1]))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.booleans())
def test_any_body_gives_rows_or_an_error_never_an_exception(body: str, openmetrics: bool) -> None:
    rows, error = to_metrics_or_error(body, openmetrics, {"job": "j"}, False, 1)
    if error is not None:
        assert len(rows) == 0
        assert error.startswith("not a valid exposition")
    else:
        assert all(dict(t)["job"] == "j" for t in rows.tags)
