"""Component types used only by tests, registered in-process (not via entry points)."""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import Field

from revopipe import (
    Batch,
    Emit,
    Pipeline,
    Processor,
    ProcessorConfig,
    Sink,
    SinkConfig,
    Source,
    SourceConfig,
    hookimpl,
)
from revopipe.config.load import load_dict
from revopipe.plugins import Registry, build_registry


class FlakyConfig(ProcessorConfig):
    fail_every: int = Field(default=3, ge=1)
    fail_always_on: int = Field(default=-1, description="a value that always raises")


class FlakyProcessor(Processor[FlakyConfig]):
    """Raises on every `fail_every`-th batch it is given (a transient fault), and always on
    a batch holding `fail_always_on` (a poison batch)."""

    type_name = "flaky"
    Config = FlakyConfig
    seen = 0  # class-level: survives the restarts the runtime performs

    async def process(self, batch: Batch) -> Batch:
        type(self).seen += 1
        if self.config.fail_always_on in batch.metrics.values:
            raise ValueError(f"poison batch {self.config.fail_always_on}")
        if type(self).seen % self.config.fail_every == 0:
            raise RuntimeError(f"transient failure on call {type(self).seen}")
        return batch


class CollectConfig(SinkConfig):
    delay: float = 0.0
    fail_first: int = 0


class CollectSink(Sink[CollectConfig]):
    """Keeps what it is given in `extras['collected'][name]`; optionally slow or failing."""

    type_name = "collect"
    Config = CollectConfig
    failures = 0

    async def write(self, batch: Batch) -> None:
        if self.config.delay:
            await anyio.sleep(self.config.delay)
        if CollectSink.failures < self.config.fail_first:
            CollectSink.failures += 1
            raise ConnectionError("sink is down")
        self.context.extras["collected"].setdefault(self.context.name, []).append(batch)


class CrashConfig(SourceConfig):
    crashes: int = 2


class CrashingSource(Source[CrashConfig]):
    """Emits one batch, then raises; after `crashes` crashes it keeps emitting."""

    type_name = "crashing"
    Config = CrashConfig
    runs = 0

    async def run(self, emit: Emit) -> None:
        CrashingSource.runs += 1
        await emit(Batch.of([]).replace())
        from revopipe.batch import MetricBatchBuilder

        b = MetricBatchBuilder()
        b.add("crash.run", float(CrashingSource.runs))
        await emit(Batch(b.build()))
        if CrashingSource.runs <= self.config.crashes:
            raise OSError("device vanished")
        while True:
            await anyio.sleep(0.01)


class _TestPlugin:
    @hookimpl
    def revopipe_component_types(self) -> list[type]:
        return [FlakyProcessor, CollectSink, CrashingSource]


def registry() -> Registry:
    FlakyProcessor.seen = 0
    CollectSink.failures = 0
    CrashingSource.runs = 0
    return build_registry([("tests", _TestPlugin())])


def pipeline(config: dict[str, Any], collected: dict[str, list[Batch]]) -> Pipeline:
    reg = registry()
    settings = config.setdefault("pipeline", {})
    settings.setdefault("restart_backoff", "10ms")
    settings.setdefault("max_restart_backoff", "50ms")
    return Pipeline(load_dict(config, reg), reg, extras={"collected": collected})


def values(batches: list[Batch]) -> list[float]:
    return [v for b in batches for v in b.metrics.values]
