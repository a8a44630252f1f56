"""The `profiler` source: statistical CPU sampling of the process the pipeline runs in
(the embedding service), one Profile event plus ranking metrics per window."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import anyio.to_thread
from pydantic import Field

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import ControlError, ControlMode, Emit, Source
from revopipe.config import Duration, SourceConfig
from revopipe.events import MetricKind
from revopipe.events import Profile as ProfileEvent
from revopipe_plugins.profiler.export import to_collapsed, to_speedscope
from revopipe_plugins.profiler.sampler import Profile, Sampler

FORMATS = ("speedscope", "collapsed")


class ProfilerConfig(SourceConfig):
    rate: float = Field(
        default=100.0,
        ge=1,
        le=1000,
        description="samples per second per thread (1..1000); 100 costs ~1 % of a CPU",
    )
    window: Duration = Field(
        default=10.0, gt=0, description="how often to emit a profile, e.g. '10s'"
    )
    top: int = Field(
        default=20, ge=1, le=10_000, description="functions reported as metrics per window"
    )
    include_idle: bool = Field(
        default=False,
        description="keep samples of threads blocked in I/O, sleep or locks (wall-clock view)",
    )


class ProfilerSource(Source[ProfilerConfig]):
    """Each window emits one batch: a `Profile` event (collapsed stacks) and metrics
    `profiler.samples` (counter, cumulative on-CPU samples since the source started),
    `profiler.overhead` (gauge, the sampler's CPU over the window's wall time, in CPUs),
    `profiler.function.self_share` / `profiler.function.total_share` (gauges 0..1 of the
    window's on-CPU samples, tagged `code.function` = `module:qualname`) for the top
    functions by self share. Every row and the event carry `process.pid`."""

    type_name = "profiler"
    Config = ProfilerConfig
    description = "statistical CPU profiler of this process: collapsed stacks and hot functions"
    control_actions: ClassVar[Mapping[str, ControlMode]] = {"profile": "read"}

    async def start(self) -> None:
        self._pid = str(os.getpid())
        self._total_samples = 0
        self._latest: Profile | None = None
        self._sampler = Sampler(self.config.rate, self.config.include_idle)
        self._sampler.start()

    async def stop(self) -> None:
        sampler = getattr(self, "_sampler", None)  # absent when start() failed
        if sampler is not None:
            # stop() joins the sampler thread (at most one tick): off the event loop
            await anyio.to_thread.run_sync(sampler.stop)

    async def run(self, emit: Emit) -> None:
        while True:
            await anyio.sleep(self.config.window)
            # building the window walks every stack: keep it off the event loop too
            profile = await anyio.to_thread.run_sync(self._sampler.window)
            self._latest = profile
            await emit(self.to_batch(profile))

    def to_batch(self, profile: Profile) -> Batch:
        self._total_samples += profile.total_samples
        pid = (("process.pid", self._pid),)
        b = MetricBatchBuilder(default_ts=profile.end_ns)
        b.add("profiler.samples", self._total_samples, MetricKind.COUNTER, "{sample}", pid)
        b.add("profiler.overhead", profile.overhead, MetricKind.GAUGE, "1", pid)
        for fs in profile.functions[: self.config.top]:
            tags = (("code.function", fs.function), ("process.pid", self._pid))
            b.add("profiler.function.self_share", fs.self_share, MetricKind.GAUGE, "1", tags)
            b.add("profiler.function.total_share", fs.total_share, MetricKind.GAUGE, "1", tags)
        event = ProfileEvent(
            start_ns=profile.start_ns,
            end_ns=profile.end_ns,
            samples=tuple(sorted(profile.stacks.items())),
            tags=pid,
        )
        return Batch(b.build(), (event,))

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        if action != "profile":
            return await super().control(action, params)
        fmt = params.get("format", "speedscope")
        if isinstance(fmt, list):  # a query key given twice
            fmt = fmt[-1] if fmt else "speedscope"
        if fmt not in FORMATS:
            raise ControlError(
                f"profiler {self.context.name!r}: format {fmt!r} is not supported; "
                f"use format={' or format='.join(FORMATS)}"
            )
        latest = self._latest
        if latest is None:
            raise ControlError(
                f"profiler {self.context.name!r}: no window has closed yet; retry after "
                f"window = {self.config.window:g}s",
                status=409,
            )
        if fmt == "collapsed":
            return to_collapsed(latest.stacks)
        return to_speedscope(latest, name=f"revopipe {self.context.name} pid {self._pid}")
