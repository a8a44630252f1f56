"""The app source reads revopipe.metrics instruments; with `aggregate` downstream, the
service's percentiles come out exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from revopipe import _core, metrics
from revopipe.events import HistogramSnapshot
from revopipe.testing import collect, make
from revopipe_plugins.app.source import AppSource

pytestmark = pytest.mark.anyio


async def test_reads_counters_gauges_and_histogram_snapshots(tmp_path: Path) -> None:
    _core.reset_instruments()
    hits = metrics.counter("app.requests", "{request}", {"route": "/a"})
    depth = metrics.gauge("app.queue.depth")
    lat = metrics.histogram("http.server.request.duration", "s", {"route": "/a"})
    hits.inc()
    hits.inc(2)
    depth.set(7)
    for v in (0.010, 0.020, 0.030):
        lat.record(v)

    batches = await collect(make(AppSource, {"interval": "50ms"}, tmp_path), 0.08)
    first = batches[0]
    rows = {(m.name, m.tags): m for m in first.metrics}
    assert rows[("app.requests", (("route", "/a"),))].value == 3.0
    assert rows[("app.queue.depth", ())].value == 7.0
    snaps = [e for e in first.events if isinstance(e, HistogramSnapshot)]
    assert len(snaps) == 1
    s = snaps[0]
    assert (s.count, s.min, s.max) == (3, 0.010, 0.030)
    assert s.sum == pytest.approx(0.060)
    decoded = HdrHistogram.decode(s.hdr)
    assert decoded.get_total_count() == 3
    # the final reading on stop carries nothing new: histograms are deltas
    assert all(not b.events for b in batches[1:])
    _core.reset_instruments()
