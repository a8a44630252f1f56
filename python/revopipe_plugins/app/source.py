"""Reads every in-process instrument each interval.

Counters arrive as cumulative totals and gauges as their value (metric rows); histograms
as `HistogramSnapshot` events holding the window's HDR histogram, so an `aggregate`
processor — here or in another revopipe — merges them exactly.
"""

from __future__ import annotations

import anyio
from pydantic import Field

from revopipe import metrics
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import Duration, SourceConfig
from revopipe.events import HistogramSnapshot, MetricKind, now_ns


class AppConfig(SourceConfig):
    interval: Duration = Field(default=10.0, gt=0, description="how often to read, e.g. '10s'")


class AppSource(Source[AppConfig]):
    type_name = "app"
    Config = AppConfig
    description = "in-process counters, gauges and histograms from revopipe.metrics"

    async def run(self, emit: Emit) -> None:
        last = now_ns()
        try:
            while True:
                await anyio.sleep(self.config.interval)
                last = await self._emit_once(emit, last)
        finally:
            # On drain, one last reading: what the service recorded since the previous
            # interval is not lost. Bounded, so a forced stop cannot hang here.
            with anyio.move_on_after(5, shield=True):
                await self._emit_once(emit, last)

    async def _emit_once(self, emit: Emit, since: int) -> int:
        now = now_ns()
        b = MetricBatchBuilder(default_ts=now)
        snapshots: list[HistogramSnapshot] = []
        for r in metrics.collect():
            kind = MetricKind(r["kind"])
            if kind is MetricKind.HISTOGRAM:
                snapshots.append(HistogramSnapshot.from_core(r, since, now))
            else:
                b.add(r["name"], r["value"], kind, r["unit"], r["tags"])
        await emit(Batch(b.build(), tuple(snapshots)))
        return now

    async def stop(self) -> None:
        # Nothing to release: the instruments belong to the service, not to the source.
        return None
