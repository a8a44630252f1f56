"""A real Prometheus server scrapes revopipe's `prometheus` sink on loopback.

The service's instruments (`revopipe.metrics`) flow through the `app` source into the
sink; a Prometheus started by the test (generated config, 1 s scrape interval, storage in
tmp_path) scrapes it, and the test asks Prometheus's HTTP API for the series: the counter
and gauge values, the histogram's buckets, count, sum and `histogram_quantile`, and the
exemplar carrying the trace id (OpenMetrics, with exemplar storage enabled).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from revopipe import Pipeline, _core, metrics
from revopipe.testing import make
from revopipe_plugins.prometheus_scrape.source import PrometheusScrapeSource

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
WAIT = 30.0  # seconds for Prometheus to start, scrape and answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
    )
    if found is None:
        message = "the `prometheus` binary is missing (Debian package `prometheus`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must install it (.ci/run does)")
        pytest.skip(message)
    return found


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Prometheus server scraping 127.0.0.1:<sink port> every second: (API URL, sink
    port)."""
    binary = prometheus_binary()
    sink_port, api_port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: revopipe\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{sink_port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{api_port}",
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{api_port}", sink_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def record_workload() -> None:
    _core.reset_instruments()
    metrics.counter("e2e.jobs", "{job}", {"queue": "default"}).inc(42)
    metrics.gauge("e2e.queue.depth").set(7)
    metrics.gauge("e2e.cpu.utilization").set(0.25)
    lat = metrics.histogram("e2e.request.duration", "s", {"route": "/users"})
    for value, times in [(0.003, 10), (0.03, 20), (0.3, 5), (3.0, 1), (30.0, 1)]:
        for _ in range(times):
            lat.record(value)
    lat.record_exemplar(0.3, TRACE, SPAN)  # the 38th observation, with its trace


# PromQL -> expected value. 38 observations: 10 <= 0.005 < 20 <= 0.05 < 6 <= 0.5 < 1 <= 5
# < 1; the median (rank 19) lies in (0.025, 0.05]: 0.025 + (19 - 10) / 20 * 0.025.
H = "e2e_request_duration_seconds"
EXPECTED: dict[str, float] = {
    'e2e_jobs_total{job="revopipe",queue="default"}': 42,
    "e2e_queue_depth": 7,
    "e2e_cpu_utilization_ratio": 0.25,
    f'{H}_count{{route="/users"}}': 38,
    f'{H}_sum{{route="/users"}}': 35.43,
    f'{H}_bucket{{route="/users",le="0.005"}}': 10,
    f'{H}_bucket{{route="/users",le="0.05"}}': 30,
    f'{H}_bucket{{route="/users",le="0.5"}}': 36,
    f'{H}_bucket{{route="/users",le="5.0"}}': 37,
    f'{H}_bucket{{route="/users",le="+Inf"}}': 38,
    f"histogram_quantile(0.5, {H}_bucket)": 0.03625,
    'up{job="revopipe"}': 1,
    # the sink holds these 4 series (and any instrument another part of the process made)
    "revopipe_prometheus_series >= bool 4": 1,
}


async def query(client: httpx.AsyncClient, api: str, promql: str) -> float | None:
    resp = await client.get(f"{api}/api/v1/query", params={"query": promql})
    if resp.status_code != 200:
        return None
    result = resp.json()["data"]["result"]
    if len(result) != 1:
        return None
    return float(result[0]["value"][1])


async def exemplars(client: httpx.AsyncClient, api: str) -> list[dict[str, Any]]:
    now = time.time()
    resp = await client.get(
        f"{api}/api/v1/query_exemplars",
        params={"query": f"{H}_bucket", "start": now - 600, "end": now + 60},
    )
    if resp.status_code != 200:
        return []
    return [e for series in resp.json()["data"] for e in series["exemplars"]]


def close(got: float | None, want: float) -> bool:
    return got is not None and abs(got - want) <= 1e-9 + 1e-6 * abs(want)


async def test_prometheus_scrapes_the_sink_and_finds_every_series(
    tmp_path: Path, prometheus: tuple[str, int]
) -> None:
    api, sink_port = prometheus
    record_workload()
    pipeline = Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path / "revopipe")},
            "sources": {"app": {"type": "app", "interval": "200ms"}},
            "sinks": {
                "prom": {
                    "type": "prometheus",
                    "inputs": ["app"],
                    "listen": f"127.0.0.1:{sink_port}",
                }
            },
        }
    )
    got: dict[str, float | None] = {}
    found: list[dict[str, Any]] = []
    try:
        async with pipeline.running(), httpx.AsyncClient(timeout=5) as client:
            with anyio.move_on_after(WAIT):
                while True:
                    try:
                        got = {q: await query(client, api, q) for q in EXPECTED}
                        found = await exemplars(client, api)
                    except httpx.TransportError:  # Prometheus still starting
                        pass
                    if found and all(close(got.get(q), v) for q, v in EXPECTED.items()):
                        break
                    await anyio.sleep(0.5)
    finally:
        _core.reset_instruments()
    wrong = {q: (got.get(q), v) for q, v in EXPECTED.items() if not close(got.get(q), v)}
    log = (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
    assert not wrong, f"(got, expected) from Prometheus: {wrong}\nprometheus log:\n{log}"
    assert any(
        e["labels"] == {"trace_id": TRACE, "span_id": SPAN} and float(e["value"]) == 0.3
        for e in found
    ), f"exemplars stored by Prometheus: {found}"


async def test_the_scrape_source_reads_prometheus_own_metrics(
    tmp_path: Path, prometheus: tuple[str, int]
) -> None:
    api, _ = prometheus
    src = make(
        PrometheusScrapeSource,
        {"targets": [f"{api}/metrics"], "interval": "5s", "timeout": "5s"},
        tmp_path,
        name="prom_self",
    )
    await src.start()
    try:
        with anyio.fail_after(WAIT):
            while True:  # until Prometheus listens
                batch = await src.scrape_all()
                rows = {m.name: m for m in batch.metrics}
                if rows["up"].value == 1.0:
                    break
                await anyio.sleep(0.5)
    finally:
        await src.stop()
    info = rows["prometheus_build_info"]
    assert info.value == 1.0
    assert dict(info.tags)["job"] == "prom_self"
    assert rows["process_cpu_seconds_total"].kind.label == "counter"
    assert rows["scrape_samples_scraped"].value == len(batch.metrics) - 3
