"""Turns the Rust core's window results into metric rows and mergeable snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Exemplar, HistogramSnapshot, MetricKind, Tags


def stat_name(q: float) -> str:
    """Percentile suffix: 50 -> 'p50', 99.9 -> 'p99_9'."""
    text = f"{q:g}".replace(".", "_")
    return f"p{text}"


def window_batch(
    results: Iterable[Mapping[str, Any]],
    snapshots: bool,
    exemplars: dict[tuple[str, Tags], list[Exemplar]] | None = None,
) -> Batch:
    """One metric row per statistic, stamped with the window's end; `{name}.{stat}`.
    A snapshot takes (and removes) the exemplars held for its series."""
    b = MetricBatchBuilder()
    events: list[HistogramSnapshot] = []
    g = MetricKind.GAUGE
    for r in results:
        name, unit, tags, end = r["name"], r["unit"], r["tags"], r["end_ns"]
        seconds = (r["end_ns"] - r["start_ns"]) / 1e9
        kind = MetricKind(r["kind"])
        if kind is MetricKind.HISTOGRAM:
            count = r["count"]
            b.add(f"{name}.count", count, g, "1", tags, end)
            b.add(f"{name}.rate", count / seconds, g, "1/s", tags, end)
            b.add(f"{name}.sum", r["sum"], g, unit, tags, end)
            b.add(f"{name}.min", r["min"], g, unit, tags, end)
            b.add(f"{name}.max", r["max"], g, unit, tags, end)
            b.add(f"{name}.mean", r["sum"] / count if count else 0.0, g, unit, tags, end)
            for q, v in r["percentiles"]:
                b.add(f"{name}.{stat_name(q)}", v, g, unit, tags, end)
            if snapshots and r["hdr"] is not None:
                snap = HistogramSnapshot.from_core(r, r["start_ns"], end)
                held = exemplars.pop((name, tags), None) if exemplars else None
                if held:
                    snap = replace(snap, exemplars=tuple(sorted(held, key=lambda e: e.value)))
                events.append(snap)
        elif kind is MetricKind.COUNTER:
            b.add(f"{name}.sum", r["increase"], g, unit, tags, end)
            b.add(f"{name}.rate", r["rate"], g, f"{unit}/s", tags, end)
        elif kind is MetricKind.GAUGE:
            b.add(f"{name}.last", r["last"], g, unit, tags, end)
            b.add(f"{name}.min", r["min"], g, unit, tags, end)
            b.add(f"{name}.max", r["max"], g, unit, tags, end)
        else:
            b.add(f"{name}.distinct", r["distinct"], g, "1", tags, end)
    return Batch(b.build(), tuple(events))
