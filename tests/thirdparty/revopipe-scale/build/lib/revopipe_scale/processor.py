"""Multiplies the values of matching metrics and sets their unit, e.g. bytes -> MiB."""

from __future__ import annotations

import fnmatch
from array import array

from pydantic import Field

import revopipe


class ScaleConfig(revopipe.ProcessorConfig):
    factor: float = Field(description="multiplier applied to each value")
    names: list[str] = Field(default_factory=lambda: ["*"], description="name globs to scale")
    unit: str | None = Field(default=None, description="new unit for scaled metrics")


class ScaleProcessor(revopipe.Processor[ScaleConfig]):
    type_name = "scale"
    Config = ScaleConfig
    description = "multiplies metric values by a factor"

    async def process(self, batch: revopipe.Batch) -> revopipe.Batch:
        m = batch.metrics
        hit = [any(fnmatch.fnmatchcase(n, g) for g in self.config.names) for n in m.names]
        values = array(
            "d", (v * self.config.factor if h else v for v, h in zip(m.values, hit, strict=True))
        )
        units = [
            self.config.unit if h and self.config.unit else u
            for u, h in zip(m.units, hit, strict=True)
        ]
        scaled = revopipe.MetricBatch(m.names, m.kinds, values, units, m.timestamps, m.tags)
        return batch.replace(metrics=scaled)
