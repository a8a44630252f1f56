"""The `system` source: host, process and container metrics on a fixed schedule.

Every `interval` one batch is emitted holding everything collected in that pass, all
rows sharing one timestamp. Ticks follow a monotonic grid (start + k * interval), so
collection time never adds up to drift; ticks missed while a full edge held `emit` back
are skipped, not caught up in a burst.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar

import anyio
import anyio.to_thread
from pydantic import Field

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import Duration, SourceConfig
from revopipe.tuning import Tunable
from revopipe_plugins.system import cgroup
from revopipe_plugins.system.cgroup import CgroupCollector
from revopipe_plugins.system.collect import (
    DEFAULT_DISKS_EXCLUDE,
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_MOUNTPOINTS_EXCLUDE,
    DEFAULT_NICS_EXCLUDE,
    HostCollector,
)
from revopipe_plugins.system.processes import ProcessTracker


class SystemConfig(SourceConfig):
    interval: Duration = Field(
        default=1.0, gt=0, description="how often to collect, e.g. '1s', '10s'"
    )
    process_interval: Duration = Field(
        default=10.0,
        gt=0,
        description="how often the process table is rescanned for new matches of "
        "`processes`, and mounts and cgroup limits are re-read",
    )
    processes: list[str] = Field(
        default_factory=list,
        description="process names to monitor, as shell patterns ('nginx', 'python*'), "
        "matched against the process name (Linux: comm, extended past 15 characters "
        "from the command line)",
    )
    pids: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=list, description="process ids to monitor"
    )
    include_self: bool = Field(default=False, description="also monitor revopipe's own process")
    per_cpu: bool = Field(
        default=True, description="report system.cpu.utilization per logical CPU too"
    )
    cpu_modes: bool = Field(
        default=True,
        description="report the total system.cpu.utilization per cpu.mode "
        "(user, system, idle, iowait...) too",
    )
    fs_types_exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FS_TYPES_EXCLUDE),
        description="filesystem types not reported (pseudo and in-memory filesystems, "
        "container overlays, read-only images); replaces the default list",
    )
    mountpoints_exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MOUNTPOINTS_EXCLUDE),
        description="mountpoint patterns not reported ('*' matches across '/'); "
        "replaces the default list",
    )
    disks_exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DISKS_EXCLUDE),
        description="block device patterns not reported in system.disk.* "
        "(loop, ram, zram, floppy and CD devices by default)",
    )
    nics_exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NICS_EXCLUDE),
        description="network interface patterns not reported in system.network.*",
    )


class SystemSource(Source[SystemConfig]):
    type_name = "system"
    Config = SystemConfig
    description = "host CPU, memory, filesystem, disk, network, process and container metrics"
    tunables: ClassVar[Mapping[str, Tunable]] = {
        "interval": Tunable(0.1, 3600.0, "seconds between collections")
    }

    cgroup_root: ClassVar[Path] = cgroup.DEFAULT_ROOT
    """Where cgroup filesystems are mounted (overridable for tests)."""
    self_cgroup: ClassVar[Path] = cgroup.DEFAULT_SELF_CGROUP
    """The file naming this process's cgroups (overridable for tests)."""

    _host: HostCollector | None = None

    async def start(self) -> None:
        cfg = self.config
        self._host = HostCollector(
            per_cpu=cfg.per_cpu,
            cpu_modes=cfg.cpu_modes,
            fs_types_exclude=cfg.fs_types_exclude,
            mountpoints_exclude=cfg.mountpoints_exclude,
            disks_exclude=cfg.disks_exclude,
            nics_exclude=cfg.nics_exclude,
            logger=self.log,
        )
        self._procs = ProcessTracker(cfg.processes, cfg.pids, cfg.include_self, self.log)
        self._cgroup = CgroupCollector(self.cgroup_root, self.self_cgroup)
        self._procs.attach_explicit()
        self._refresh()
        limits = self._cgroup.limits
        if limits.cpu_limit is not None or limits.memory_limit is not None:
            self.log.info(
                "system: cgroup v%d limits: cpu %s cores, memory %s bytes",
                limits.version,
                limits.cpu_limit,
                limits.memory_limit,
            )

    def _refresh(self) -> None:
        """The slow path: mounts, CPU count and cgroup limits change rarely."""
        assert self._host is not None
        self._host.refresh()
        self._procs.logical_cpus = self._host.logical_cpus
        self._cgroup.refresh()

    async def _rescan(self) -> None:
        procs = self._procs
        procs.check()
        if procs.scans:
            procs.add(await anyio.to_thread.run_sync(procs.scan))

    def collect(self) -> Batch:
        """One tick: every metric, one timestamp."""
        assert self._host is not None
        b = MetricBatchBuilder()
        self._host.collect(b)
        self._cgroup.collect(b)
        self._procs.collect(b)
        return Batch(metrics=b.build())

    async def run(self, emit: Emit) -> None:
        if self._host is None:
            await self.start()
        assert self._host is not None
        slow_every = self.config.process_interval
        await self._rescan()
        # The baseline for the first tick's CPU figures: a ratio needs two readings, and
        # the very first reading alone would only say "since boot".
        self._host.prime()
        next_tick = anyio.current_time() + self.config.interval
        next_slow = anyio.current_time() + slow_every
        while True:
            await anyio.sleep_until(next_tick)
            await emit(self.collect())
            now = anyio.current_time()
            if now >= next_slow:
                self._refresh()
                await self._rescan()
                next_slow = now + slow_every
                now = anyio.current_time()
            interval = self.config.interval  # tunable while running: read every tick
            next_tick += interval
            if next_tick <= now:
                missed = int((now - next_tick) // interval) + 1
                self.log.debug("system: collection fell behind; skipping %d tick(s)", missed)
                next_tick += missed * interval
