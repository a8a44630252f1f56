"""Container limits from the cgroup this process runs in (cgroup v2 or v1).

Limits are re-read rarely (they change only on e.g. `docker update`); the memory usage
file is read on every tick. A limit counts only when it is really set: `max`, `-1` and
the page-aligned "unlimited" values of cgroup v1 (about 2**63) are treated as no limit.

The effective limit of a nested cgroup is the smallest one on the path from its
directory up to the mount root, so a Kubernetes pod-level limit is found even when the
container's own cgroup sets none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from revopipe.batch import MetricBatchBuilder
from revopipe.events import MetricKind

DEFAULT_ROOT = Path("/sys/fs/cgroup")
DEFAULT_SELF_CGROUP = Path("/proc/self/cgroup")

UNLIMITED_BYTES = 2**60
"""Memory limits at or above this are "no limit" (v1 writes 9223372036854771712)."""


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """What the cgroup allows: `None` where nothing is set."""

    version: int
    """2 for the unified hierarchy, 1 for legacy controllers, 0 when no cgroup is found."""
    cpu_limit: float | None = None
    """CPU quota in cores (quota / period)."""
    memory_limit: int | None = None
    """Memory limit in bytes."""
    memory_usage_file: Path | None = None
    """The usage file beside the binding memory limit, read each tick."""


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_usage(path: Path) -> int | None:
    """Bytes in a `memory.current` / `memory.usage_in_bytes` file, or None."""
    try:
        with open(path, "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def parse_self_cgroup(text: str) -> dict[str, tuple[str, str]]:
    """`/proc/self/cgroup` as controller -> (controllers field, path). Lines are
    `id:controllers:path`; the cgroup v2 line has no controllers and is returned under
    the key "". The controllers field (e.g. "cpu,cpuacct") is the v1 mount directory."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = ("", path)
            continue
        for c in controllers.split(","):
            out[c] = (controllers, path)
    return out


def _chain(base: Path, path: str) -> list[Path]:
    """Directories from the process's cgroup up to `base` that exist, deepest first.

    When the cgroup namespace is not private, `/proc/self/cgroup` names a path that is
    not below the mount; then only `base` itself is used."""
    dirs: list[Path] = []
    rel = Path(path.lstrip("/"))
    while True:
        d = base / rel
        if d.is_dir():
            dirs.append(d)
        if rel == rel.parent:
            break
        rel = rel.parent
    return dirs


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max` ("200000 100000" or "max 100000") -> cores."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_memory_limit(text: str) -> int | None:
    """`memory.max` (v2) or `memory.limit_in_bytes` (v1) -> bytes, None when unlimited."""
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    if value <= 0 or value >= UNLIMITED_BYTES:
        return None
    return value


def _smallest_cpu(candidates: list[float | None]) -> float | None:
    set_ = [c for c in candidates if c is not None]
    return min(set_) if set_ else None


def _smallest_memory(
    dirs: list[Path], limit_name: str, usage_name: str
) -> tuple[int | None, Path | None]:
    best: int | None = None
    usage: Path | None = None
    for d in dirs:
        text = _read_text(d / limit_name)
        limit = parse_memory_limit(text) if text is not None else None
        if limit is not None and (best is None or limit < best):
            best = limit
            usage = d / usage_name
    return best, usage


def read_limits(root: Path = DEFAULT_ROOT, self_cgroup: Path = DEFAULT_SELF_CGROUP) -> CgroupLimits:
    """The effective CPU and memory limits of this process's cgroup."""
    if not root.is_dir():
        return CgroupLimits(version=0)
    paths = parse_self_cgroup(_read_text(self_cgroup) or "")
    if (root / "cgroup.controllers").is_file():
        dirs = _chain(root, paths.get("", ("", "/"))[1])
        cpu = _smallest_cpu(
            [parse_cpu_max(t) for d in dirs if (t := _read_text(d / "cpu.max")) is not None]
        )
        mem, usage = _smallest_memory(dirs, "memory.max", "memory.current")
        return CgroupLimits(2, cpu, mem, usage)

    cpu_field, cpu_path = paths.get("cpu", ("cpu", "/"))
    cpu_base = next(
        (root / n for n in (cpu_field, "cpu", "cpu,cpuacct", "cpuacct,cpu") if (root / n).is_dir()),
        None,
    )
    mem_field, mem_path = paths.get("memory", ("memory", "/"))
    mem_base = next((root / n for n in (mem_field, "memory") if (root / n).is_dir()), None)
    if cpu_base is None and mem_base is None:
        return CgroupLimits(version=0)
    cpu_limits: list[float | None] = []
    if cpu_base is not None:
        for d in _chain(cpu_base, cpu_path):
            quota = _read_int(d / "cpu.cfs_quota_us")
            period = _read_int(d / "cpu.cfs_period_us")
            if quota is not None and period and quota > 0 and period > 0:
                cpu_limits.append(quota / period)
    mem_limit: int | None = None
    mem_usage: Path | None = None
    if mem_base is not None:
        mem_limit, mem_usage = _smallest_memory(
            _chain(mem_base, mem_path), "memory.limit_in_bytes", "memory.usage_in_bytes"
        )
    return CgroupLimits(1, _smallest_cpu(cpu_limits), mem_limit, mem_usage)


_NO_TAGS = ()


class CgroupCollector:
    """Emits `container.*` metrics when a limit is set; nothing otherwise."""

    def __init__(self, root: Path = DEFAULT_ROOT, self_cgroup: Path = DEFAULT_SELF_CGROUP) -> None:
        self.root = root
        self.self_cgroup = self_cgroup
        self.limits = CgroupLimits(version=0)

    def refresh(self) -> None:
        self.limits = read_limits(self.root, self.self_cgroup)

    def collect(self, b: MetricBatchBuilder) -> None:
        lim = self.limits
        if lim.cpu_limit is not None:
            b.add("container.cpu.limit", lim.cpu_limit, MetricKind.GAUGE, "{cpu}", _NO_TAGS)
        if lim.memory_limit is None:
            return
        b.add("container.memory.limit", lim.memory_limit, MetricKind.GAUGE, "By", _NO_TAGS)
        used = read_usage(lim.memory_usage_file) if lim.memory_usage_file else None
        if used is not None:
            b.add("container.memory.usage", used, MetricKind.GAUGE, "By", _NO_TAGS)
            b.add(
                "container.memory.utilization",
                used / lim.memory_limit,
                MetricKind.GAUGE,
                "1",
                _NO_TAGS,
            )
