"""Emits numbered metrics: each value is its sequence number, so a consumer can prove
that nothing was lost or duplicated. With `kind = "histogram"` it emits observations in
seconds instead, a deterministic spread a consumer can check by count and sum."""

from __future__ import annotations

from array import array
from typing import Literal

import anyio
from pydantic import Field

from revopipe.batch import Batch, MetricBatch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import Duration, SourceConfig
from revopipe.events import MetricKind, make_tags, now_ns


class GenerateConfig(SourceConfig):
    name: str = Field(default="revopipe.generate.sequence", description="metric name")
    batch_size: int = Field(default=100, ge=1, le=1_000_000, description="events per batch")
    interval: Duration = Field(
        default=1.0, description="pause between batches; '0s' emits as fast as accepted"
    )
    count: int = Field(default=0, ge=0, description="events to emit in all; 0 = unbounded")
    mode: Literal["sequence", "constant"] = Field(
        default="sequence",
        description="'sequence' numbers every event; 'constant' re-sends one prebuilt "
        "batch (measures the engine, not the generator)",
    )
    kind: Literal["counter", "histogram"] = Field(
        default="counter",
        description="'counter': the value is the sequence number (unit '1'); 'histogram': "
        "observation i is (i % 1000 + 1) / 1000 seconds (unit 's'), so every window of "
        "1000 consecutive events holds 1 ms .. 1 s once each",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="tags on every event")


class GenerateSource(Source[GenerateConfig]):
    type_name = "generate"
    Config = GenerateConfig
    description = "synthetic numbered metrics for demos, tests and benchmarks"

    async def run(self, emit: Emit) -> None:
        cfg = self.config
        tags = make_tags({"generator": self.context.name, **cfg.tags})
        seq = 0
        template: MetricBatch | None = None
        while cfg.count == 0 or seq < cfg.count:
            n = cfg.batch_size if cfg.count == 0 else min(cfg.batch_size, cfg.count - seq)
            if cfg.mode == "constant":
                if template is None or len(template) != n:
                    template = _constant(cfg.name, n, tags, cfg.kind)
                metrics = template
            elif cfg.kind == "histogram":
                metrics = _histogram(cfg.name, seq, n, tags)
            else:
                b = MetricBatchBuilder()
                for i in range(seq, seq + n):
                    b.add(cfg.name, float(i), MetricKind.COUNTER, "1", tags)
                metrics = b.build()
            await emit(Batch(metrics))
            seq += n
            if cfg.interval > 0:
                await anyio.sleep(cfg.interval)


def _constant(
    name: str, n: int, tags: tuple[tuple[str, str], ...], kind: str = "counter"
) -> MetricBatch:
    if kind == "histogram":
        return _histogram(name, 0, n, tags)
    b = MetricBatchBuilder()
    ts = b.default_ts
    return MetricBatch(
        [name] * n,
        bytes([MetricKind.COUNTER]) * n,
        array("d", [1.0]) * n,
        ["1"] * n,
        array("q", [ts]) * n,
        [tags] * n,
    )


def _histogram(name: str, seq: int, n: int, tags: tuple[tuple[str, str], ...]) -> MetricBatch:
    # Built as columns, not row by row: benchmarks use this to load a transport, so the
    # generator must not be what limits them.
    ts = now_ns()
    return MetricBatch(
        [name] * n,
        bytes([MetricKind.HISTOGRAM]) * n,
        array("d", [(i % 1000 + 1) / 1000 for i in range(seq, seq + n)]),
        ["s"] * n,
        array("q", [ts]) * n,
        [tags] * n,
    )
