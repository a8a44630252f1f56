"""Per-process metrics for processes chosen by name pattern, by pid, or revopipe itself.

Finding processes (a walk of the whole process table) is the expensive part, so it runs
only every `process_interval`, in a worker thread: `scan()` is safe to call there as it
only builds new objects. Each tick samples just the processes already matched, one
`oneshot()` each.

Names are matched against the process name (`psutil.Process.name()`: the kernel's `comm`,
extended from the command line when the kernel truncated it at 15 characters), with
shell-style patterns: `nginx` matches exactly, `python*` matches `python3.11` too.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import psutil

from revopipe.batch import MetricBatchBuilder
from revopipe.events import MetricKind, Tags, make_tags
from revopipe_plugins.system.collect import compile_globs

COUNTER = MetricKind.COUNTER
GAUGE = MetricKind.GAUGE
_COMM_MAX = 15
"""Linux truncates `comm` to this many bytes."""


@dataclass(slots=True)
class Tracked:
    """One matched process and the baseline of its CPU time."""

    proc: psutil.Process
    name: str
    tags: Tags
    user_tags: Tags
    system_tags: Tags
    cpu: float
    """user + system CPU seconds at the previous sample."""
    at: float
    """`time.monotonic()` of the previous sample."""
    fds: bool = True
    """False once counting descriptors was refused (another user's process)."""

    @classmethod
    def attach(cls, pid: int, name: str | None = None) -> Tracked:
        """Start tracking `pid`; its CPU baseline is taken now. Raises `psutil.Error`."""
        proc = psutil.Process(pid)
        if name is None:
            name = proc.name()
        times = proc.cpu_times()
        base = {"process.pid": str(pid), "process.executable.name": name}
        return cls(
            proc=proc,
            name=name,
            tags=make_tags(base),
            user_tags=make_tags({**base, "cpu.mode": "user"}),
            system_tags=make_tags({**base, "cpu.mode": "system"}),
            cpu=times.user + times.system,
            at=time.monotonic(),
        )


def _linux_names(skip: Collection[int]) -> Iterable[tuple[int, str]]:
    """(pid, name) of every process, reading only `/proc/<pid>/comm` (about a quarter of
    what `psutil.process_iter(["name"])` costs)."""
    with os.scandir("/proc") as entries:
        for entry in entries:
            pid_text = entry.name
            if not pid_text.isdigit():
                continue
            pid = int(pid_text)
            if pid in skip:
                continue
            try:
                with open(f"/proc/{pid_text}/comm", "rb") as f:
                    name = f.read().rstrip(b"\n").decode(errors="replace")
            except OSError:
                continue  # exited meanwhile
            yield pid, name


def _psutil_names(skip: Collection[int]) -> Iterable[tuple[int, str]]:
    for p in psutil.process_iter(["name"]):
        if p.pid not in skip:
            yield p.pid, p.info.get("name") or ""


def scan(match: Callable[[str], bool], skip: Collection[int]) -> list[Tracked]:
    """New processes whose name matches, already primed. Runs in a worker thread."""
    use_proc = sys.platform.startswith("linux") and os.path.isdir("/proc/self")
    found: list[Tracked] = []
    for pid, name in (_linux_names if use_proc else _psutil_names)(skip):
        full: str | None = name
        if use_proc and len(name.encode()) >= _COMM_MAX:
            full = None  # truncated: let psutil extend it from the command line
        elif not match(name):
            continue
        try:
            t = Tracked.attach(pid, full)
        except psutil.Error:
            continue
        if full is None and not match(t.name):
            continue
        found.append(t)
    return found


class ProcessTracker:
    """Holds the matched processes and appends their metrics to each tick's batch."""

    def __init__(
        self,
        patterns: Sequence[str] = (),
        pids: Sequence[int] = (),
        include_self: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.match = compile_globs(patterns) if patterns else None
        explicit = list(pids)
        if include_self:
            explicit.append(os.getpid())
        self._explicit = list(dict.fromkeys(explicit))
        self.tracked: dict[int, Tracked] = {}
        self._gone: list[Tags] = []
        """`process.running` = 0 rows to send once on the next tick."""
        self.logical_cpus = psutil.cpu_count() or 1
        self.log = logger or logging.getLogger(__name__)

    @property
    def scans(self) -> bool:
        """Whether name patterns are configured (explicit pids need no scan)."""
        return self.match is not None

    def attach_explicit(self) -> None:
        """Track the configured pids (and our own). A pid that does not exist is reported
        as not running once, so an alert on `process.running` fires."""
        for pid in self._explicit:
            if pid in self.tracked:
                continue
            try:
                self.tracked[pid] = Tracked.attach(pid)
            except psutil.NoSuchProcess:
                self.log.warning("system: pid %d does not exist", pid)
                self._gone.append((("process.pid", str(pid)),))
            except psutil.Error as exc:
                self.log.warning("system: cannot monitor pid %d: %r", pid, exc)

    def check(self) -> None:
        """Drop processes that exited or whose pid was reused (cheap, at rescan time)."""
        for pid, t in list(self.tracked.items()):
            if not t.proc.is_running():
                self._lost(pid)

    def scan(self) -> list[Tracked]:
        """Find new matches (blocking; run it in a thread). Apply with `add()`."""
        if self.match is None:
            return []
        return scan(self.match, frozenset(self.tracked))

    def add(self, found: Iterable[Tracked]) -> None:
        for t in found:
            pid = t.proc.pid
            if pid not in self.tracked:
                self.tracked[pid] = t
                self.log.debug("system: now monitoring %s (pid %d)", t.name, pid)

    def _lost(self, pid: int) -> None:
        t = self.tracked.pop(pid)
        self._gone.append(t.tags)
        self.log.info("system: process %s (pid %d) is gone", t.name, pid)

    def collect(self, b: MetricBatchBuilder) -> None:
        gone = self._gone
        for tags in gone:
            b.add("process.running", 0.0, GAUGE, "1", tags)
        gone.clear()
        lost: list[int] = []
        per_cpu = 1.0 / self.logical_cpus
        for pid, t in self.tracked.items():
            p = t.proc
            try:
                with p.oneshot():
                    if p.status() == psutil.STATUS_ZOMBIE:
                        lost.append(pid)  # exited; only its parent has not reaped it
                        continue
                    times = p.cpu_times()
                    now = time.monotonic()
                    mem = p.memory_info()
                    threads = p.num_threads()
                    fds = -1
                    if t.fds:
                        try:
                            fds = p.num_fds()
                        except psutil.AccessDenied:
                            t.fds = False
                        except AttributeError:  # no descriptors on this platform
                            t.fds = False
            except psutil.NoSuchProcess:
                lost.append(pid)
                continue
            except psutil.AccessDenied:
                b.add("process.running", 1.0, GAUGE, "1", t.tags)
                continue
            cpu = times.user + times.system
            elapsed = now - t.at
            if elapsed > 0:
                b.add(
                    "process.cpu.utilization",
                    max(0.0, (cpu - t.cpu) / elapsed * per_cpu),
                    GAUGE,
                    "1",
                    t.tags,
                )
            t.cpu, t.at = cpu, now
            b.add("process.cpu.time", times.user, COUNTER, "s", t.user_tags)
            b.add("process.cpu.time", times.system, COUNTER, "s", t.system_tags)
            b.add("process.memory.usage", mem.rss, GAUGE, "By", t.tags)
            b.add("process.memory.virtual", mem.vms, GAUGE, "By", t.tags)
            b.add("process.thread.count", threads, GAUGE, "{thread}", t.tags)
            if fds >= 0:
                b.add("process.open_file_descriptor.count", fds, GAUGE, "{file_descriptor}", t.tags)
            b.add("process.running", 1.0, GAUGE, "1", t.tags)
        for pid in lost:
            t = self.tracked.pop(pid)
            self.log.info("system: process %s (pid %d) is gone", t.name, pid)
            b.add("process.running", 0.0, GAUGE, "1", t.tags)
