"""Host-wide metrics: CPU, load, memory, paging, filesystems, disks, network interfaces and
the process count.

Everything that does not change between ticks is computed once and reused: tag tuples
per CPU, mode, device and interface, and the filtered filesystem list (refreshed by
`refresh()`, at the source's `process_interval`). CPU utilization is computed from the
deltas of one `cpu_times` read per tick, so the source keeps its own baseline and does
not share psutil's module-global `cpu_percent` state with other code in the process.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psutil

from revopipe.batch import MetricBatchBuilder
from revopipe.events import MetricKind, Tags

COUNTER = MetricKind.COUNTER
GAUGE = MetricKind.GAUGE

_GUEST_FIELDS = frozenset({"guest", "guest_nice"})
"""Linux counts guest time inside user/nice already; adding it again would double it."""
_IDLE_FIELDS = frozenset({"idle", "iowait"})
_MODE_NAMES = {"irq": "interrupt"}
"""psutil field -> OpenTelemetry `cpu.mode` value where the names differ."""

DEFAULT_FS_TYPES_EXCLUDE = (
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.lxcfs",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "aufs",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfsd",
)
DEFAULT_MOUNTPOINTS_EXCLUDE = (
    "/dev",
    "/dev/*",
    "/proc",
    "/proc/*",
    "/sys",
    "/sys/*",
    "/run/credentials/*",
    "/var/lib/docker/*",
    "/var/lib/containers/storage/*",
    "/var/lib/kubelet/pods/*",
)
DEFAULT_DISKS_EXCLUDE = ("loop*", "ram*", "zram*", "fd[0-9]*", "sr[0-9]*")
DEFAULT_NICS_EXCLUDE = ("lo",)


def compile_globs(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A predicate true for names matching any shell-style pattern (case-sensitive;
    `*` also matches `/`)."""
    pats = list(patterns)
    if not pats:
        return lambda _name: False
    rx = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in pats))
    return lambda name: rx.match(name) is not None


def _state(key: str, value: str) -> Tags:
    return ((key, value),)


_MEM = {
    s: _state("system.memory.state", s) for s in ("used", "free", "available", "cached", "buffers")
}
_PAGING_USED = _state("system.paging.state", "used")
_PAGING_FREE = _state("system.paging.state", "free")
_NO_TAGS: Tags = ()


@dataclass(frozen=True, slots=True)
class _Filesystem:
    mountpoint: str
    used: Tags
    free: Tags
    reserved: Tags
    plain: Tags


@dataclass(frozen=True, slots=True)
class _DiskTags:
    read: Tags
    write: Tags
    plain: Tags


@dataclass(frozen=True, slots=True)
class _NicTags:
    receive: Tags
    transmit: Tags


_NO_DISK = _DiskTags((), (), ())
_NO_NIC = _NicTags((), ())
"""Cache entries of excluded devices and interfaces."""


class HostCollector:
    """Appends one tick of host metrics to a builder. Call `prime()` once before the
    first `collect()`; the first CPU figures then cover exactly the first interval."""

    def __init__(
        self,
        *,
        per_cpu: bool = True,
        cpu_modes: bool = True,
        fs_types_exclude: Sequence[str] = DEFAULT_FS_TYPES_EXCLUDE,
        mountpoints_exclude: Sequence[str] = DEFAULT_MOUNTPOINTS_EXCLUDE,
        disks_exclude: Sequence[str] = DEFAULT_DISKS_EXCLUDE,
        nics_exclude: Sequence[str] = DEFAULT_NICS_EXCLUDE,
        logger: logging.Logger | None = None,
    ) -> None:
        self.per_cpu = per_cpu
        self.cpu_modes = cpu_modes
        self.log = logger or logging.getLogger(__name__)
        self._fs_types_excluded = frozenset(fs_types_exclude)
        self._mount_excluded = compile_globs(mountpoints_exclude)
        self._disk_excluded = compile_globs(disks_exclude)
        self._nic_excluded = compile_globs(nics_exclude)

        fields: tuple[str, ...] = psutil.cpu_times()._fields
        self._sum_idx = tuple(i for i, f in enumerate(fields) if f not in _GUEST_FIELDS)
        self._idle_idx = tuple(i for i, f in enumerate(fields) if f in _IDLE_FIELDS)
        self._mode_rows = tuple(
            (i, _state("cpu.mode", _MODE_NAMES.get(fields[i], fields[i]))) for i in self._sum_idx
        )
        self._cpu_tags: list[Tags] = []
        self._prev_total: tuple[float, ...] | None = None
        self._prev_cpus: list[tuple[float, ...]] | None = None

        mem_fields = psutil.virtual_memory()._fields
        self._mem_extra = tuple(f for f in ("cached", "buffers") if f in mem_fields)

        self.logical_cpus = psutil.cpu_count() or 1
        self._filesystems: list[_Filesystem] = []
        self._disks: dict[str, _DiskTags] = {}
        self._nics: dict[str, _NicTags] = {}
        self._failed: set[str] = set()

    # -- slow path -------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read what changes rarely: the CPU count and the mounted filesystems."""
        self.logical_cpus = psutil.cpu_count() or self.logical_cpus
        try:
            parts = psutil.disk_partitions(all=True)
        except OSError as exc:
            self._warn_once("partitions", exc)
            return
        # A later mount on the same path hides the earlier one: keep the one on top.
        top = {p.mountpoint: p for p in parts}
        by_mount: dict[str, _Filesystem] = {}
        for p in top.values():
            if p.fstype in self._fs_types_excluded or self._mount_excluded(p.mountpoint):
                continue
            # Files bind-mounted into containers (/etc/hosts...) are not filesystems.
            if not os.path.isdir(p.mountpoint):
                continue
            base = {
                "system.device": p.device,
                "system.filesystem.mountpoint": p.mountpoint,
                "system.filesystem.type": p.fstype,
            }
            by_mount[p.mountpoint] = _Filesystem(
                mountpoint=p.mountpoint,
                used=_tags(base, "system.filesystem.state", "used"),
                free=_tags(base, "system.filesystem.state", "free"),
                reserved=_tags(base, "system.filesystem.state", "reserved"),
                plain=_tags(base),
            )
        self._filesystems = list(by_mount.values())

    @property
    def mountpoints(self) -> list[str]:
        return [fs.mountpoint for fs in self._filesystems]

    def prime(self) -> None:
        """Take the CPU baseline that the first tick's utilization is measured from."""
        self._prev_total, self._prev_cpus = self._read_cpu()

    # -- per tick --------------------------------------------------------------------

    def collect(self, b: MetricBatchBuilder) -> None:
        for name, part in (
            ("cpu", self._cpu),
            ("load", self._load),
            ("memory", self._memory),
            ("paging", self._paging),
            ("filesystem", self._filesystem),
            ("disk", self._disk),
            ("network", self._network),
            ("processes", self._process_count),
        ):
            try:
                part(b)
            except Exception as exc:  # one broken probe must not cost the others
                self._warn_once(name, exc)

    def _warn_once(self, part: str, exc: BaseException) -> None:
        if part in self._failed:
            self.log.debug("system: %s metrics failed again: %r", part, exc)
            return
        self._failed.add(part)
        self.log.warning("system: cannot collect %s metrics: %r (logged once)", part, exc)

    def _read_cpu(self) -> tuple[tuple[float, ...], list[tuple[float, ...]] | None]:
        if not self.per_cpu:
            return tuple(psutil.cpu_times()), None
        cpus: list[tuple[float, ...]] = [tuple(c) for c in psutil.cpu_times(percpu=True)]
        # Sum the per-CPU lines instead of a second read of /proc/stat.
        return tuple(map(sum, zip(*cpus, strict=True))), cpus

    def _busy(self, prev: tuple[float, ...], cur: tuple[float, ...]) -> float | None:
        total = idle = 0.0
        for i in self._sum_idx:
            d = cur[i] - prev[i]
            if d > 0:  # iowait may go backwards on tickless kernels
                total += d
        if total <= 0:
            return None
        for i in self._idle_idx:
            d = cur[i] - prev[i]
            if d > 0:
                idle += d
        return min(1.0, max(0.0, (total - idle) / total))

    def _cpu(self, b: MetricBatchBuilder) -> None:
        b.add("system.cpu.logical.count", self.logical_cpus, GAUGE, "{cpu}", _NO_TAGS)
        total, cpus = self._read_cpu()
        prev_total, prev_cpus = self._prev_total, self._prev_cpus
        self._prev_total, self._prev_cpus = total, cpus
        if prev_total is None:
            return  # not primed: a ratio over an unknown span would be meaningless
        if cpus is not None and (prev_cpus is None or len(cpus) != len(prev_cpus)):
            return  # CPUs came or went: the sums cover different sets; restart baselines
        busy = self._busy(prev_total, total)
        if busy is None:
            return  # no clock tick elapsed: nothing to report rather than a false 0
        b.add("system.cpu.utilization", busy, GAUGE, "1", _NO_TAGS)
        if self.cpu_modes:
            span = sum(max(0.0, total[i] - prev_total[i]) for i in self._sum_idx)
            for i, mode in self._mode_rows:
                b.add(
                    "system.cpu.utilization",
                    min(1.0, max(0.0, total[i] - prev_total[i]) / span),
                    GAUGE,
                    "1",
                    mode,
                )
        if cpus is None or prev_cpus is None:
            return
        tags = self._cpu_tags
        while len(tags) < len(cpus):
            tags.append(_state("cpu.logical_number", str(len(tags))))
        for n, (cur, prev) in enumerate(zip(cpus, prev_cpus, strict=True)):
            ratio = self._busy(prev, cur)
            if ratio is not None:
                b.add("system.cpu.utilization", ratio, GAUGE, "1", tags[n])

    def _load(self, b: MetricBatchBuilder) -> None:
        one, five, fifteen = psutil.getloadavg()
        b.add("system.cpu.load_average.1m", one, GAUGE, "{thread}", _NO_TAGS)
        b.add("system.cpu.load_average.5m", five, GAUGE, "{thread}", _NO_TAGS)
        b.add("system.cpu.load_average.15m", fifteen, GAUGE, "{thread}", _NO_TAGS)

    def _memory(self, b: MetricBatchBuilder) -> None:
        vm = psutil.virtual_memory()
        b.add("system.memory.usage", vm.used, GAUGE, "By", _MEM["used"])
        b.add("system.memory.usage", vm.free, GAUGE, "By", _MEM["free"])
        b.add("system.memory.usage", vm.available, GAUGE, "By", _MEM["available"])
        for field in self._mem_extra:
            b.add("system.memory.usage", getattr(vm, field), GAUGE, "By", _MEM[field])
        if vm.total:
            b.add("system.memory.utilization", vm.used / vm.total, GAUGE, "1", _MEM["used"])
        b.add("system.memory.limit", vm.total, GAUGE, "By", _NO_TAGS)

    def _paging(self, b: MetricBatchBuilder) -> None:
        sm = psutil.swap_memory()
        b.add("system.paging.usage", sm.used, GAUGE, "By", _PAGING_USED)
        b.add("system.paging.usage", sm.free, GAUGE, "By", _PAGING_FREE)
        b.add(
            "system.paging.utilization",
            sm.used / sm.total if sm.total else 0.0,
            GAUGE,
            "1",
            _PAGING_USED,
        )

    def _filesystem(self, b: MetricBatchBuilder) -> None:
        usage = psutil.disk_usage
        for fs in self._filesystems:
            try:
                u = usage(fs.mountpoint)
            except OSError:
                continue  # unmounted since the last refresh, or not readable
            b.add("system.filesystem.usage", u.used, GAUGE, "By", fs.used)
            b.add("system.filesystem.usage", u.free, GAUGE, "By", fs.free)
            b.add(
                "system.filesystem.usage",
                max(0, u.total - u.used - u.free),
                GAUGE,
                "By",
                fs.reserved,
            )
            # Like df: the share of the space usable by unprivileged users.
            room = u.used + u.free
            b.add(
                "system.filesystem.utilization",
                u.used / room if room else 0.0,
                GAUGE,
                "1",
                fs.plain,
            )

    def _disk(self, b: MetricBatchBuilder) -> None:
        counters = psutil.disk_io_counters(perdisk=True, nowrap=False)
        if not counters:
            return
        cache = self._disks
        for name, c in counters.items():
            t = cache.get(name)
            if t is None:
                t = cache[name] = _NO_DISK if self._disk_excluded(name) else _disk_tags(name)
            if t is _NO_DISK:
                continue
            b.add("system.disk.io", c.read_bytes, COUNTER, "By", t.read)
            b.add("system.disk.io", c.write_bytes, COUNTER, "By", t.write)
            b.add("system.disk.operations", c.read_count, COUNTER, "{operation}", t.read)
            b.add("system.disk.operations", c.write_count, COUNTER, "{operation}", t.write)
            busy = getattr(c, "busy_time", None)
            if busy is not None:
                b.add("system.disk.io_time", busy / 1000.0, COUNTER, "s", t.plain)

    def _network(self, b: MetricBatchBuilder) -> None:
        cache = self._nics
        for name, c in psutil.net_io_counters(pernic=True, nowrap=False).items():
            t = cache.get(name)
            if t is None:
                t = cache[name] = _NO_NIC if self._nic_excluded(name) else _nic_tags(name)
            if t is _NO_NIC:
                continue
            b.add("system.network.io", c.bytes_recv, COUNTER, "By", t.receive)
            b.add("system.network.io", c.bytes_sent, COUNTER, "By", t.transmit)
            b.add("system.network.packets", c.packets_recv, COUNTER, "{packet}", t.receive)
            b.add("system.network.packets", c.packets_sent, COUNTER, "{packet}", t.transmit)
            b.add("system.network.errors", c.errin, COUNTER, "{error}", t.receive)
            b.add("system.network.errors", c.errout, COUNTER, "{error}", t.transmit)
            b.add("system.network.dropped", c.dropin, COUNTER, "{packet}", t.receive)
            b.add("system.network.dropped", c.dropout, COUNTER, "{packet}", t.transmit)

    def _process_count(self, b: MetricBatchBuilder) -> None:
        b.add("system.process.count", len(psutil.pids()), GAUGE, "{process}", _NO_TAGS)


def _tags(base: dict[str, str], key: str | None = None, value: str = "") -> Tags:
    items = dict(base)
    if key is not None:
        items[key] = value
    return tuple(sorted(items.items()))


def _disk_tags(name: str) -> _DiskTags:
    base = {"system.device": name}
    return _DiskTags(
        _tags(base, "disk.io.direction", "read"),
        _tags(base, "disk.io.direction", "write"),
        _tags(base),
    )


def _nic_tags(name: str) -> _NicTags:
    base = {"network.interface.name": name}
    return _NicTags(
        _tags(base, "network.io.direction", "receive"),
        _tags(base, "network.io.direction", "transmit"),
    )
