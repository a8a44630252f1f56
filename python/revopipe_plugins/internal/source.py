"""Reports every component's counters like any other metric, so they can be filtered,
aggregated, alerted on and exported with the rest."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

import anyio
import psutil
from pydantic import Field

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import Duration, SourceConfig
from revopipe.events import Health, HealthStatus, MetricKind, make_tags
from revopipe.runtime.stats import ComponentStats
from revopipe.tuning import Tunable

HEALTH_VALUE = {HealthStatus.HEALTHY: 1.0, HealthStatus.DEGRADED: 0.5, HealthStatus.UNHEALTHY: 0.0}


class InternalConfig(SourceConfig):
    interval: Duration = Field(default=10.0, description="how often to report, e.g. '10s'")


class InternalSource(Source[InternalConfig]):
    type_name = "internal"
    Config = InternalConfig
    description = "revopipe's own component counters, health and process usage"
    tunables: ClassVar[Mapping[str, Tunable]] = {
        "interval": Tunable(0.1, 3600.0, "seconds between readings")
    }

    async def start(self) -> None:
        self._proc = psutil.Process(os.getpid())
        self._last_health: dict[str, HealthStatus] = {}

    async def run(self, emit: Emit) -> None:
        while True:
            await anyio.sleep(self.config.interval)
            await emit(self.collect())

    def collect(self) -> Batch:
        b = MetricBatchBuilder()
        events: list[Health] = []
        for s in self.context.pipeline_stats():
            tags = make_tags(
                {"component": s.name, "component.kind": s.kind, "component.type": s.type}
            )
            for key in ComponentStats.COUNTERS:
                b.add(
                    f"revopipe.component.{key}",
                    getattr(s, key),
                    MetricKind.COUNTER,
                    "{event}"
                    if key.startswith("events") or key in ("dropped", "dead_lettered")
                    else "1",
                    tags,
                )
            b.add("revopipe.component.busy_time", s.busy_seconds, MetricKind.COUNTER, "s", tags)
            b.add("revopipe.component.health", HEALTH_VALUE[s.health], MetricKind.GAUGE, "1", tags)
            # Health is reported as an event on change, so a sink sees transitions
            # without diffing gauges.
            if self._last_health.get(s.name, HealthStatus.HEALTHY) is not s.health:
                events.append(Health(f"component:{s.name}", s.health, s.reason))
            self._last_health[s.name] = s.health
        cpu = self._proc.cpu_times()
        b.add(
            "process.cpu.time",
            cpu.user + cpu.system,
            MetricKind.COUNTER,
            "s",
            (("process.pid", str(self._proc.pid)),),
        )
        b.add(
            "process.memory.usage",
            self._proc.memory_info().rss,
            MetricKind.GAUGE,
            "By",
            (("process.pid", str(self._proc.pid)),),
        )
        return Batch(b.build(), tuple(events))
