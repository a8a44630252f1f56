"""The `loadtest` source in a pipeline: per-second results against a real server, merged
exactly by `aggregate`, and the config errors `revopipe validate` reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from revopipe.batch import Batch
from revopipe.events import HistogramSnapshot
from revopipe_plugins.loadtest.tests.server import serve
from tests.helpers import pipeline


@pytest.mark.anyio
async def test_per_second_results_flow_into_aggregate(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    with serve(delay=0.005) as server:
        cfg = {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {
                "load": {
                    "type": "loadtest",
                    "url": server.url + "/api",
                    "test": "custom",
                    "stages": ["3s:3"],
                    "thresholds": ["p50 < 5s"],
                }
            },
            "processors": {
                "stats": {"type": "aggregate", "inputs": ["load"], "window": "1h", "grace": "0s"}
            },
            "sinks": {
                "raw": {"type": "collect", "inputs": ["load"]},
                "agg": {"type": "collect", "inputs": ["stats"]},
            },
        }
        await pipeline(cfg, collected).run()  # the source ends with the test: so does the run
        hits = server.hits
    raw = collected["raw"]
    snaps = [e for b in raw for e in b.events if isinstance(e, HistogramSnapshot)]
    assert len(snaps) >= 2 and {s.name for s in snaps} == {"loadtest.request.duration"}
    names = {n for b in raw for n in b.metrics.names}
    assert {"loadtest.requests", "loadtest.rps", "loadtest.threshold"} <= names
    totals = [
        v
        for b in raw
        for n, v in zip(b.metrics.names, b.metrics.values, strict=True)
        if n == "loadtest.requests"
    ]
    # cumulative; a request still in flight when the test ended reached the server uncounted
    assert totals == sorted(totals) and totals[-1] <= hits <= totals[-1] + 3
    # aggregate merges the per-second histograms: its count is the sum of theirs
    agg = {
        n: v
        for b in collected["agg"]
        for n, v in zip(b.metrics.names, b.metrics.values, strict=True)
    }
    assert agg["loadtest.request.duration.count"] == sum(s.count for s in snaps)
    assert 0.005 <= agg["loadtest.request.duration.p50"] < 1.0
