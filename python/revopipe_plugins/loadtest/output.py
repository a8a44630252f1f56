"""A generator snapshot as pipeline data: counters and gauges per second, plus the
latencies as a mergeable `HistogramSnapshot`, so `aggregate` computes exact percentiles
over any window and the `sqlite` sink keeps them."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from revopipe import _core
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import HistogramSnapshot, MetricKind, Tags

LATENCY = "loadtest.request.duration"
"""Seconds, from send (closed model) or from the intended send time (open model)."""
_RESOLUTION = 1e-6  # the generator records microseconds, as aggregate does for unit "s"


def snapshot_batch(
    snap: Mapping[str, Any], totals: dict[str, float], tags: Tags, start_ns: int
) -> Batch:
    """`snap` (one interval) as a batch stamped at its end. `totals` carries the running
    counter totals between calls (counters are cumulative, as the pipeline expects)."""
    end_ns = start_ns + round(snap["t"] * 1e9)
    begin_ns = end_ns - round(snap["interval"] * 1e9)
    b = MetricBatchBuilder()

    def counter(name: str, value: float, unit: str, extra: Tags = ()) -> None:
        key = name + repr(extra)
        totals[key] = totals.get(key, 0.0) + value
        b.add(name, totals[key], MetricKind.COUNTER, unit, tuple(sorted(tags + extra)), end_ns)

    counter("loadtest.requests", snap["requests"], "{request}")
    for error, n in snap["errors"].items():
        counter("loadtest.errors", n, "{request}", (("error.type", error),))
    for status, n in snap["status"].items():
        counter("loadtest.responses", n, "{response}", (("http.response.status_code", status),))
    counter("loadtest.received", snap["bytes_received"], "By")
    counter("loadtest.dropped", snap["dropped"], "{request}")
    interval = snap["interval"] or 1.0
    b.add(
        "loadtest.rps", snap["requests"] / interval, MetricKind.GAUGE, "{request}/s", tags, end_ns
    )
    b.add("loadtest.target", snap["target"], MetricKind.GAUGE, "1", tags, end_ns)
    b.add("loadtest.active", snap["active"], MetricKind.GAUGE, "1", tags, end_ns)
    events: tuple[HistogramSnapshot, ...] = ()
    lat = snap["latency"]
    hdr = base64.b64encode(snap["latency_hdr"]).decode("ascii")
    # Requests that failed before a response (refused, timed out) carry no latency: the
    # histogram's own total is the count that matches its percentiles.
    recorded = _core.hdr_bucket_counts(hdr, _RESOLUTION, [lat["max"] * 2 + 1.0])[0]
    if recorded:
        events = (
            HistogramSnapshot(
                name=LATENCY,
                unit="s",
                start_ns=begin_ns,
                end_ns=end_ns,
                count=recorded,
                sum=lat["mean"] * recorded,
                min=lat["min"],
                max=lat["max"],
                hdr=hdr,
                resolution=_RESOLUTION,
                tags=tags,
            ),
        )
    return Batch(b.build(), events)
