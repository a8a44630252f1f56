"""Reads every in-process instrument and takes the finished spans each interval.

Counters arrive as cumulative totals and gauges as their value (metric rows); histograms
as `HistogramSnapshot` events holding the window's HDR histogram, so an `aggregate`
processor — here or in another revopipe — merges them exactly. Spans finished since the
previous reading (`revopipe.trace`, the ASGI middleware, the httpx hooks) arrive as `Span`
events in the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import anyio
import anyio.lowlevel
from pydantic import Field

from revopipe import metrics, trace
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import Duration, SourceConfig
from revopipe.events import Event, HistogramSnapshot, MetricKind, now_ns
from revopipe.tuning import Tunable

DRAIN_CHUNK = 1000
DROPPED_SPANS = "revopipe.trace.dropped_spans"
"""Counter (cumulative) of finished spans the process dropped because its buffer was full."""


class AppConfig(SourceConfig):
    interval: Duration = Field(default=10.0, gt=0, description="how often to read, e.g. '10s'")
    traces: bool = Field(default=True, description="also take the finished spans of revopipe.trace")
    trace_sample_ratio: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="share of new traces sampled (0.0 .. 1.0); unset leaves the process's "
        "revopipe.trace.configure() setting (default 1.0)",
    )
    trace_errors_always: bool | None = Field(
        default=None,
        description="keep spans that end in error even when their trace is not sampled; "
        "unset leaves the process's setting (default true)",
    )
    trace_max_buffered: int | None = Field(
        default=None,
        ge=1,
        description="finished spans held between two readings before more are dropped "
        "and counted; unset leaves the process's setting (default 10000)",
    )


class AppSource(Source[AppConfig]):
    type_name = "app"
    Config = AppConfig
    description = "in-process counters, gauges, histograms and spans (revopipe.metrics/trace)"
    tunables: ClassVar[Mapping[str, Tunable]] = {
        "interval": Tunable(0.1, 3600.0, "seconds between readings")
    }

    async def start(self) -> None:
        cfg = self.config
        if cfg.traces:
            # Settings given here win over the process's; unset ones leave it alone.
            trace.configure(
                sample_ratio=cfg.trace_sample_ratio,
                always_on_error=cfg.trace_errors_always,
                max_buffered=cfg.trace_max_buffered,
            )

    async def run(self, emit: Emit) -> None:
        last = now_ns()
        try:
            while True:
                await anyio.sleep(self.config.interval)
                last = await self._emit_once(emit, last)
        finally:
            # On drain, one last reading: what the service recorded (and the spans it
            # finished) since the previous interval is not lost. Bounded, so a forced
            # stop cannot hang here.
            with anyio.move_on_after(5, shield=True):
                await self._emit_once(emit, last)

    async def _emit_once(self, emit: Emit, since: int) -> int:
        now = now_ns()
        b = MetricBatchBuilder(default_ts=now)
        events: list[Event] = []
        for r in metrics.collect():
            kind = MetricKind(r["kind"])
            if kind is MetricKind.HISTOGRAM:
                events.append(HistogramSnapshot.from_core(r, since, now))
            else:
                b.add(r["name"], r["value"], kind, r["unit"], r["tags"])
        if self.config.traces:
            # Taken in chunks, letting the rest of the pipeline run in between: building
            # ten thousand Span events takes tens of milliseconds.
            for _ in range(trace.buffered_spans() // DRAIN_CHUNK + 1):
                chunk = trace.drain(DRAIN_CHUNK)
                events.extend(chunk)
                if len(chunk) < DRAIN_CHUNK:
                    break
                await anyio.lowlevel.checkpoint()
            b.add(DROPPED_SPANS, trace.dropped_spans(), MetricKind.COUNTER, "{span}")
        await emit(Batch(b.build(), tuple(events)))
        return now

    async def stop(self) -> None:
        # Nothing to release: the instruments and spans belong to the service.
        return None
