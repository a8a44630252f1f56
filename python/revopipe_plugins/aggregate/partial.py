"""`mode = "partial"`: each batch on its own, cut by window, histogram values turned into
mergeable snapshots.

This is the first tier of a scale-out (docs/scale-out.md): every aggregator instance
takes a share of the agents' batches, does the expensive part (raw observations into HDR
histograms) and passes on one compact batch per window. The output depends only on the
input batch, never on what else this instance has seen, so when a batch is redelivered
to another instance that one produces the same batches with the same `origin` ids, and a
transport that deduplicates by id (JetStream's `Nats-Msg-Id`) keeps exactly one copy.
Counters, gauges and sets pass through as they are: their window statistics need the
series' earlier values (a counter's previous total), which only the second tier has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from revopipe import _core
from revopipe.batch import Batch, MetricBatch
from revopipe.events import Event, Exemplar, HistogramSnapshot, MetricKind, Tags

MAX_EXEMPLARS = 16

_HISTOGRAM = int(MetricKind.HISTOGRAM)


def window_of(ts: int, window_ns: int) -> int:
    """The start of the window holding `ts` (epoch-aligned, as the Rust core cuts)."""
    return ts - ts % window_ns


def partial_batches(
    batch: Batch,
    *,
    window_ns: int,
    significant_digits: int,
    max_series_per_metric: int,
) -> list[Batch]:
    """One batch per window the input touches, each with `origin` "<input origin>/<window
    start>" (None when the input has no origin). Spans, alerts and the like ride on the
    first batch."""
    m = batch.metrics
    snaps = [e for e in batch.events if isinstance(e, HistogramSnapshot)]
    others: list[Event] = [e for e in batch.events if not isinstance(e, HistogramSnapshot)]
    if not len(m) and not snaps:
        return [batch]

    n_hist = m.kinds.count(_HISTOGRAM)
    rows: dict[int, list[int]] = {}  # window -> non-histogram row indexes
    if n_hist < len(m):
        first, last = min(m.timestamps), max(m.timestamps)
        if window_of(first, window_ns) == window_of(last, window_ns):
            # one window (a source stamps a whole collection pass alike): no per-row work
            rows[window_of(first, window_ns)] = [
                i for i, k in enumerate(m.kinds) if k != _HISTOGRAM
            ]
        else:
            by_window: dict[int, list[int]] = defaultdict(list)
            for i, (kind, ts) in enumerate(zip(m.kinds, m.timestamps, strict=True)):
                if kind != _HISTOGRAM:
                    by_window[window_of(ts, window_ns)].append(i)
            rows = dict(by_window)

    out_snaps: dict[int, list[HistogramSnapshot]] = defaultdict(list)
    if n_hist or snaps:
        # A fresh aggregator per batch: nothing from other batches may leak into the
        # output, or a redelivered batch would not reproduce it byte for byte.
        agg = _core.Aggregator(
            window_ns=window_ns,
            percentiles=[],
            significant_digits=significant_digits,
            max_series_per_metric=max_series_per_metric,
            grace_ns=0,
            late_policy="drop",
        )
        if n_hist:
            h = m if n_hist == len(m) else m.select([k == _HISTOGRAM for k in m.kinds])
            agg.ingest(h.names, h.kinds, h.values, h.units, h.timestamps, h.tags)
        exemplars: dict[tuple[str, Tags, int], list[Exemplar]] = defaultdict(list)
        for s in snaps:
            agg.merge_snapshot(
                s.name, s.unit, s.tags, s.start_ns, s.count, s.sum, s.min, s.max, s.hdr
            )
            if s.exemplars:
                exemplars[(s.name, s.tags, window_of(s.start_ns, window_ns))].extend(s.exemplars)
        for r in agg.flush(0, True):
            if r["hdr"] is None:
                continue
            snap = HistogramSnapshot.from_core(r, r["start_ns"], r["end_ns"])
            held = exemplars.get((snap.name, snap.tags, r["start_ns"]))
            if held:
                kept = sorted(held, key=lambda e: e.timestamp_ns)[-MAX_EXEMPLARS:]
                snap = replace(snap, exemplars=tuple(sorted(kept, key=lambda e: e.value)))
            out_snaps[r["start_ns"]].append(snap)

    starts = sorted(set(rows) | set(out_snaps))
    out: list[Batch] = []
    for n, start in enumerate(starts):
        idx = rows.get(start, [])
        metrics = _take(m, idx) if idx else MetricBatch()
        events: Sequence[Event] = out_snaps.get(start, [])
        if n == 0 and others:
            events = [*events, *others]
        origin = f"{batch.origin}/{start}" if batch.origin is not None else None
        out.append(Batch(metrics, tuple(events), origin=origin))
    if not out:  # everything was an empty snapshot
        return [Batch(MetricBatch(), tuple(others), origin=batch.origin)] if others else []
    return out


def _take(m: MetricBatch, idx: list[int]) -> MetricBatch:
    if len(idx) == len(m):
        return m
    keep = [False] * len(m)
    for i in idx:
        keep[i] = True
    return m.select(keep)
