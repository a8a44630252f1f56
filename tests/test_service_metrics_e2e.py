"""A service's own instruments -> `app` source -> `aggregate` -> sink, in one embedded
pipeline: the percentiles that come out are those of the values the service recorded."""

from __future__ import annotations

import math
import random
from pathlib import Path

import anyio
import pytest

from revopipe import Batch, _core, metrics
from tests.helpers import pipeline

pytestmark = pytest.mark.anyio


async def test_recorded_latencies_come_out_as_exact_percentiles(tmp_path: Path) -> None:
    _core.reset_instruments()
    rng = random.Random(3)
    recorded = [rng.lognormvariate(-4.0, 0.7) for _ in range(5000)]
    lat = metrics.histogram("http.server.request.duration", "s", {"route": "/users"})
    hits = metrics.counter("app.requests", "{request}", {"route": "/users"})
    for v in recorded:
        lat.record(v)
        hits.inc()

    collected: dict[str, list[Batch]] = {}
    p = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"app": {"type": "app", "interval": "100ms"}},
            "processors": {"stats": {"type": "aggregate", "inputs": ["app"], "window": "1h"}},
            "sinks": {"out": {"type": "collect", "inputs": ["stats"]}},
        },
        collected,
    )
    async with p.running():
        await anyio.sleep(0.35)
    # drain closed the (one) open window
    out = {(m.name, m.tags): m.value for b in collected["out"] for m in b.metrics}
    tags = (("route", "/users"),)
    ordered = sorted(recorded)
    assert out[("http.server.request.duration.count", tags)] == len(recorded)
    assert out[("http.server.request.duration.max", tags)] == ordered[-1]
    for q, stat in [(50, "p50"), (99, "p99"), (99.9, "p99_9")]:
        ref = ordered[math.ceil(q / 100 * len(ordered)) - 1]
        assert out[(f"http.server.request.duration.{stat}", tags)] == pytest.approx(
            ref, rel=1e-3, abs=1e-6
        )
    _core.reset_instruments()
