"""Groups metrics into series (name + tags) and tumbling windows aligned to the epoch.

Per window and series it emits: histograms — count, rate, sum, min, max, mean and the
chosen percentiles (HdrHistogram, exact to `significant_digits`), plus a mergeable
`HistogramSnapshot`; counters (cumulative totals) — the increase as `.sum` and `.rate`,
counter resets handled; gauges — last, min, max; sets — distinct count. Upstream
`HistogramSnapshot`s (from `app` sources or other revopipe instances) are merged, so
percentiles over many agents are exact, not averages of percentiles.

Windows close when wall-clock time passes their end plus `grace`. An event for a window
already closed is late: counted (`revopipe.aggregate.late_events`) and, by `late`, dropped
or folded into the current window. All the accumulating runs in Rust with the GIL
released, one call per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field, field_validator

from revopipe import _core
from revopipe.acks import Ack, release_all
from revopipe.batch import Batch, MetricBatch, MetricBatchBuilder
from revopipe.components import Processor
from revopipe.config import Duration, ProcessorConfig
from revopipe.events import Event, Exemplar, HistogramSnapshot, MetricKind, Tags, make_tags
from revopipe_plugins.aggregate.output import window_batch
from revopipe_plugins.aggregate.partial import partial_batches, window_of

MAX_EXEMPLARS = 16
"""Exemplars kept per series between two closed windows (as the instruments keep)."""


class AggregateConfig(ProcessorConfig):
    window: Duration = Field(default=10.0, gt=0, description="tumbling window, e.g. '10s'")
    grace: Duration = Field(
        default=1.0, ge=0, description="wait past a window's end for stragglers, e.g. '1s'"
    )
    percentiles: list[float] = Field(
        default_factory=lambda: [50.0, 90.0, 95.0, 99.0, 99.9],
        description="percentiles of histograms, each in [0, 100]",
    )
    significant_digits: int = Field(
        default=3, ge=1, le=5, description="HdrHistogram precision (3 = 0.1% error)"
    )
    max_series_per_metric: int = Field(
        default=2000, ge=1, description="tag sets per metric name before the overflow series"
    )
    late: Literal["drop", "current"] = Field(
        default="drop",
        description="late events: 'drop' (counted) or 'current' (counted, folded into "
        "the open window)",
    )
    snapshots: bool = Field(
        default=True, description="also emit mergeable HistogramSnapshot events"
    )
    mode: Literal["window", "partial"] = Field(
        default="window",
        description="'window': statistics per closed window; 'partial': each batch on its "
        "own, cut by window, histogram values turned into snapshots and everything else "
        "passed on (the first tier of a scale-out, see docs/scale-out.md)",
    )
    watermark: Literal["clock", "data"] = Field(
        default="clock",
        description="'clock': windows close as wall-clock time passes, data or not; "
        "'data': the watermark stays where it is while no window is open, so an idle "
        "standby that takes over accepts redelivered windows instead of calling them late",
    )

    @field_validator("percentiles")
    @classmethod
    def _in_range(cls, v: list[float]) -> list[float]:
        bad = [q for q in v if not 0 <= q <= 100]
        if bad:
            raise ValueError(f"percentiles must be within [0, 100], got {bad}")
        return v


class AggregateProcessor(Processor[AggregateConfig]):
    type_name = "aggregate"
    Config = AggregateConfig
    description = "windowed per-series stats and exact HDR percentiles (Rust)"
    clock: Callable[[], int] = staticmethod(time.time_ns)
    """Wall clock in ns; tests substitute their own."""

    async def start(self) -> None:
        cfg = self.config
        # In window mode an input's data leaves with the window that holds it, so its
        # upstream delivery is acknowledged only once that window has been written; a
        # partial's outputs carry the input's acks as any processor's do.
        self.holds_acks = cfg.mode == "window"
        self._agg = _core.Aggregator(
            window_ns=int(cfg.window * 1e9),
            percentiles=cfg.percentiles,
            significant_digits=cfg.significant_digits,
            max_series_per_metric=cfg.max_series_per_metric,
            grace_ns=int(cfg.grace * 1e9),
            late_policy=cfg.late,
        )
        # Close windows promptly without a timer per window.
        self.tick_interval = min(cfg.window / 4, 1.0)
        self._reported = (0, 0)
        # Exemplars ride along with the merged snapshots: the Rust windows hold only counts.
        self._exemplars: dict[tuple[str, Tags], list[Exemplar]] = {}
        # Acks of inputs whose data sits in open windows, with the end of the newest
        # window each one touches.
        self._held: list[tuple[int, tuple[Ack, ...]]] = []

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        cfg = self.config
        if cfg.mode == "partial":
            # stateless: the outputs carry the input's acks (and nothing is held)
            outs = partial_batches(
                batch,
                window_ns=int(cfg.window * 1e9),
                significant_digits=cfg.significant_digits,
                max_series_per_metric=cfg.max_series_per_metric,
            )
            return outs
        m = batch.metrics
        if len(m):
            self._agg.ingest(m.names, m.kinds, m.values, m.units, m.timestamps, m.tags)
        others: list[Event] = []
        for e in batch.events:
            if not isinstance(e, HistogramSnapshot):
                others.append(e)
            else:
                self._agg.merge_snapshot(
                    e.name, e.unit, e.tags, e.start_ns, e.count, e.sum, e.min, e.max, e.hdr
                )
                if e.exemplars and self.config.snapshots:
                    held = self._exemplars.setdefault((e.name, e.tags), [])
                    # the latest few, so a long window cannot grow this without bound
                    held[:] = [*held, *e.exemplars][-MAX_EXEMPLARS:]
        if batch.acks:
            self._hold(batch)
        # Results leave on the timer: a window is complete only when it closes. Spans,
        # alerts and the like are not aggregated: they go on at once, so `app -> aggregate
        # -> sink` keeps the service's traces.
        return Batch(MetricBatch(), tuple(others)) if others else None

    def _hold(self, batch: Batch) -> None:
        w = int(self.config.window * 1e9)
        stamps = batch.metrics.timestamps
        newest = max(
            (e.start_ns for e in batch.events if isinstance(e, HistogramSnapshot)),
            default=max(stamps) if stamps else None,
        )
        if newest is not None and stamps:
            newest = max(newest, max(stamps))
        if newest is None:
            release_all(batch.acks)  # nothing of it went into a window
            return
        end = window_of(newest, w) + w
        if self.config.late == "current" and end <= self._agg.watermark:
            # folded into the newest open window: held until the one after now closes
            end = window_of(self.clock(), w) + w
        self._held.append((end, batch.acks))

    def _due_acks(self, force: bool) -> tuple[Ack, ...]:
        if force:
            due, self._held = self._held, []
        else:
            mark = self._agg.watermark
            due = [h for h in self._held if h[0] <= mark]
            self._held = [h for h in self._held if h[0] > mark]
        return tuple(a for _, acks in due for a in acks)

    async def tick(self) -> Batch | None:
        return self._close(force=False)

    async def flush(self) -> Batch | None:
        if self.config.mode == "partial":
            return None
        return self._close(force=True)

    def _close(self, force: bool) -> Batch | None:
        if self.config.mode == "partial":
            return None
        if not force and self.config.watermark == "data" and not self._agg.open_windows:
            # Idle: leave the watermark where the data left it (see `watermark`); anything
            # still held went into no window (late, dropped) and is accepted as such.
            release_all(self._due_acks(force=True))
            return None
        results = self._agg.flush(self.clock(), force)
        acks = self._due_acks(force)
        out = window_batch(results, self.config.snapshots, self._exemplars).with_acks(acks)
        late, overflow = self._agg.late_events, self._agg.overflow_events
        if (late, overflow) != self._reported or (results and (late or overflow)):
            # The guard's and the late policy's counts travel as ordinary metrics.
            b = MetricBatchBuilder()
            tags = make_tags({"component": self.context.name})
            b.add("revopipe.aggregate.late_events", late, MetricKind.COUNTER, "{event}", tags)
            b.add(
                "revopipe.aggregate.overflow_events", overflow, MetricKind.COUNTER, "{event}", tags
            )
            self._reported = (late, overflow)
            out = out.replace(metrics=type(out.metrics).concat([out.metrics, b.build()]))
        if not len(out):
            release_all(acks)  # their data was late and dropped: nothing more to write
            return None
        return out
