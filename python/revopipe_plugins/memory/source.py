"""The `memory` source: resident and virtual memory of chosen processes, the Python heap
of revopipe's own process and, opt-in, tracemalloc's allocation sites that grew.

Every `interval` one batch holds every reading of that pass. `process.memory.usage` (RSS)
is the series the optimizer's leak detector (`revopipe_plugins.optimizer.leak`) judges.

Costs measured for the choices below (CPython 3.11, this machine): `sys.getallocatedblocks()`
takes ~0.1 ms with 3 M blocks and `gc.get_count()`/`gc.get_stats()` ~2 µs, so they are
always on; `len(gc.get_objects())` takes ~20 ms per million tracked objects with the GIL held
(the whole interpreter stalls), so `python.gc.objects` is opt-in (`gc_objects`).
"""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import tracemalloc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated

import anyio
import anyio.to_thread
import psutil
from pydantic import Field, field_validator

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import Duration, SourceConfig
from revopipe.events import MetricKind, Tags, make_tags
from revopipe_plugins.memory.tracemalloc_sites import Site, SiteTracker

GAUGE = MetricKind.GAUGE
COUNTER = MetricKind.COUNTER


class MemoryConfig(SourceConfig):
    interval: Duration = Field(default=10.0, gt=0, description="how often to report, e.g. '10s'")
    pids: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=list,
        description="process ids to watch; empty means revopipe's own process",
    )
    match: list[str] | None = Field(
        default=None,
        description="regular expressions (Python `re`, searched anywhere) matched against "
        "each process's name and its command line; matching processes are watched too",
    )
    rescan_interval: Duration = Field(
        default=10.0,
        gt=0,
        description="how often the process table is searched again for new `match`es",
    )
    tracemalloc: bool = Field(
        default=False,
        description="trace Python allocations in revopipe's own process and report the "
        "sites that grew (slows every allocation down; see README)",
    )
    tracemalloc_frames: int = Field(
        default=1, ge=1, le=100, description="frames kept per traced allocation"
    )
    top_sites: int = Field(
        default=10, ge=0, description="how many of the most-grown allocation sites to report"
    )
    gc_objects: bool = Field(
        default=False,
        description="also report python.gc.objects, counted by walking every object the "
        "collector tracks (~20 ms per million objects, interpreter paused)",
    )

    @field_validator("match")
    @classmethod
    def _valid_regexes(cls, patterns: list[str] | None) -> list[str] | None:
        for i, pattern in enumerate(patterns or ()):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"memory: match[{i}] = {pattern!r} is not a valid regular expression "
                    f"({exc}); fix it, or escape literal characters such as ( [ + with a "
                    "backslash"
                ) from exc
        return patterns


class Ticker:
    """Ticks on a monotonic grid (start + k * interval), so the time a pass takes does not
    add up to drift; ticks missed while a pass ran long are skipped, not caught up in a
    burst."""

    def __init__(self, interval: float, log: logging.Logger) -> None:
        self.interval = interval
        self.log = log
        self.next = anyio.current_time() + interval

    async def wait(self) -> None:
        now = anyio.current_time()
        if self.next <= now:  # the previous pass ran past this tick
            missed = int((now - self.next) // self.interval) + 1
            self.log.debug("memory: a pass fell behind; skipping %d tick(s)", missed)
            self.next += missed * self.interval
        await anyio.sleep_until(self.next)
        self.next += self.interval


@dataclass(slots=True)
class Watched:
    proc: psutil.Process
    name: str
    tags: Tags


def _attach(pid: int) -> Watched:
    """Start watching `pid`. Raises `psutil.Error` when it is gone or not ours to read."""
    proc = psutil.Process(pid)
    name = proc.name()
    return Watched(
        proc, name, make_tags({"process.pid": str(pid), "process.executable.name": name})
    )


def find_matches(
    patterns: Sequence[re.Pattern[str]], skip: Iterable[int]
) -> list[tuple[Watched, int]]:
    """Processes (not in `skip`) whose name or command line one of `patterns` finds, each
    with the index of the first pattern that did. Walks the whole process table: run it in
    a worker thread."""
    skipped = set(skip)
    found: list[tuple[Watched, int]] = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.pid in skipped:
            continue
        name = p.info.get("name") or ""
        cmdline = " ".join(p.info.get("cmdline") or ())
        hit = next((i for i, r in enumerate(patterns) if r.search(name) or r.search(cmdline)), None)
        if hit is None:
            continue
        try:
            found.append((_attach(p.pid), hit))
        except psutil.Error:
            continue  # exited meanwhile, or another user's
    return found


class MemorySource(Source[MemoryConfig]):
    type_name = "memory"
    Config = MemoryConfig
    description = "process RSS/virtual memory, Python heap and tracemalloc allocation growth"

    async def start(self) -> None:
        cfg = self.config
        self._own_pid = os.getpid()
        self._watched: dict[int, Watched] = {}
        self._patterns = [re.compile(p) for p in cfg.match or ()]
        self._matched: set[int] = set()
        """Indexes of the patterns that matched some process at least once."""
        for pid in cfg.pids or [self._own_pid]:
            try:
                self._watched[pid] = _attach(pid)
            except psutil.NoSuchProcess:
                self.log.warning("memory: pid %d from `pids` does not exist; not watching it", pid)
            except psutil.Error as exc:
                self.log.warning("memory: cannot watch pid %d from `pids`: %r", pid, exc)
        self._own_tags = make_tags(
            {"process.pid": str(self._own_pid), "process.executable.name": _own_name()}
        )
        self._next_rescan = anyio.current_time() + cfg.rescan_interval
        self._sites: SiteTracker | None = None
        if cfg.tracemalloc:
            self._sites = SiteTracker(cfg.tracemalloc_frames)
            if not self._sites.start():
                self.log.info(
                    "memory: tracemalloc was already tracing (%d frame(s)); keeping its settings",
                    tracemalloc.get_traceback_limit(),
                )

    async def stop(self) -> None:
        sites: SiteTracker | None = getattr(self, "_sites", None)  # None if start() failed early
        if sites is not None:
            sites.stop()

    async def _rescan(self) -> None:
        if not self._patterns:
            return
        found = await anyio.to_thread.run_sync(find_matches, self._patterns, list(self._watched))
        for w, hit in found:
            pid = w.proc.pid
            self._matched.add(hit)
            if pid not in self._watched:
                self._watched[pid] = w
                self.log.info(
                    "memory: now watching %s (pid %d), matched by %r",
                    w.name,
                    pid,
                    self._patterns[hit].pattern,
                )

    def collect(self, b: MetricBatchBuilder) -> None:
        """One pass over the watched processes (and the own interpreter's heap)."""
        for pid, w in list(self._watched.items()):
            p = w.proc
            try:
                # A pid the kernel handed to a new process is not the one we watched.
                if not p.is_running():
                    raise psutil.NoSuchProcess(pid)
                with p.oneshot():
                    if p.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.NoSuchProcess(pid)  # exited, not reaped yet
                    mem = p.memory_info()
            except psutil.NoSuchProcess:
                del self._watched[pid]
                self.log.info(
                    "memory: process %s (pid %d) is gone; no longer watching it", w.name, pid
                )
                continue
            except psutil.AccessDenied as exc:
                del self._watched[pid]
                self.log.warning(
                    "memory: reading the memory of %s (pid %d) was refused (%r); "
                    "no longer watching it (run revopipe as its user to watch it)",
                    w.name,
                    pid,
                    exc,
                )
                continue
            b.add("process.memory.usage", mem.rss, GAUGE, "By", w.tags)
            b.add("process.memory.virtual", mem.vms, GAUGE, "By", w.tags)
        if self._own_pid in self._watched or self._sites is not None:
            self._python(b)

    def _python(self, b: MetricBatchBuilder) -> None:
        tags = self._own_tags
        b.add("python.heap.allocated_blocks", sys.getallocatedblocks(), GAUGE, "{block}", tags)
        for gen, s in enumerate(gc.get_stats()):
            gtags = make_tags((*tags, ("gc.generation", gen)))
            b.add("python.gc.collections", s["collections"], COUNTER, "{collection}", gtags)
            b.add("python.gc.uncollectable", s["uncollectable"], COUNTER, "{object}", gtags)
        if self.config.gc_objects:
            b.add("python.gc.objects", len(gc.get_objects()), GAUGE, "{object}", tags)
        if self._sites is not None:
            traced, peak = self._sites.memory()
            b.add("python.tracemalloc.traced", traced, GAUGE, "By", tags)
            b.add("python.tracemalloc.peak", peak, GAUGE, "By", tags)

    def _site_rows(self, sites: Sequence[Site]) -> Batch:
        b = MetricBatchBuilder()
        for s in sites:
            tags = make_tags((*self._own_tags, ("code.site", s.site)))
            b.add("python.tracemalloc.site.growth", s.growth, GAUGE, "By", tags)
        return Batch(metrics=b.build())

    async def run(self, emit: Emit) -> None:
        await self._rescan()
        for i, r in enumerate(self._patterns):
            if i not in self._matched:
                # Not an error: the process may start later; rescans keep looking.
                self.log.info("memory: no process matches %r (yet)", r.pattern)
        async with anyio.create_task_group() as tg:
            if self._sites is not None:
                # Apart from the readings: a snapshot of a big heap can take longer than
                # an interval, and RSS should keep its schedule meanwhile.
                tg.start_soon(self._run_sites, self._sites, emit)
            await self._run_readings(emit)

    async def _run_readings(self, emit: Emit) -> None:
        ticker = self._ticker()
        while True:
            await ticker.wait()
            b = MetricBatchBuilder()
            self.collect(b)
            await emit(Batch(metrics=b.build()))
            if anyio.current_time() >= self._next_rescan:
                await self._rescan()
                self._next_rescan = anyio.current_time() + self.config.rescan_interval

    async def _run_sites(self, sites: SiteTracker, emit: Emit) -> None:
        await anyio.to_thread.run_sync(sites.baseline)
        ticker = self._ticker()
        while True:
            await ticker.wait()
            grown = await anyio.to_thread.run_sync(sites.step, self.config.top_sites)
            if grown:
                await emit(self._site_rows(grown))

    def _ticker(self) -> Ticker:
        return Ticker(self.config.interval, self.log)


def _own_name() -> str:
    try:
        return psutil.Process().name()
    except psutil.Error:
        return os.path.basename(sys.executable)
