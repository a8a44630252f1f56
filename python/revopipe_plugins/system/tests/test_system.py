"""The `system` source: real collection on this host, process tracking and cgroup parsing.

Run with `pytest --import-mode=importlib python/revopipe_plugins/system/tests`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from pydantic import ValidationError

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import ComponentContext
from revopipe.config.load import load_dict
from revopipe.events import Metric, MetricKind
from revopipe.runtime.stats import ComponentStats
from revopipe_plugins.system import SystemSource, revopipe_component_types
from revopipe_plugins.system.cgroup import CgroupCollector, parse_cpu_max, read_limits
from revopipe_plugins.system.collect import HostCollector, compile_globs
from revopipe_plugins.system.processes import ProcessTracker
from revopipe_plugins.system.source import SystemConfig

INTERVAL = 0.5
RUN_SECONDS = 2.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_source(tmp_path: Path, **config: Any) -> SystemSource:
    cfg = SystemConfig.model_validate({"type": "system", **config})
    ctx = ComponentContext(
        name="host",
        data_dir=tmp_path,
        logger=logging.getLogger("test.system"),
        stats=ComponentStats("host", "source", "system"),
        pipeline_stats=lambda: [],
        extras={},
    )
    return SystemSource(cfg, ctx)


class Collected:
    """Batches from one run, with the monotonic time each arrived."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.arrived: list[float] = []
        self.started = 0.0

    async def emit(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.arrived.append(time.monotonic())

    def metrics(self, i: int, name: str) -> list[Metric]:
        return [m for m in self.batches[i].metrics if m.name == name]

    def all(self, name: str) -> list[Metric]:
        return [m for b in self.batches for m in b.metrics if m.name == name]


async def run_for(source: SystemSource, seconds: float, out: Collected) -> None:
    await source.start()
    out.started = time.monotonic()
    with anyio.move_on_after(seconds):
        await source.run(out.emit)


BURN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


@pytest.fixture(scope="module")
def burner() -> Iterator[subprocess.Popen[bytes]]:
    """A child keeping one core busy, so the first tick has real CPU time to report."""
    child = subprocess.Popen([sys.executable, "-c", BURN])
    yield child
    child.kill()
    child.wait(timeout=10)


@pytest.fixture(scope="module")
def run(burner: subprocess.Popen[bytes]) -> Collected:
    """One 2.5 s run at 0.5 s, watching this process and the burner by pid, and every
    process named like this one by name."""
    out = Collected()
    source = make_source(
        Path("."),
        interval=f"{INTERVAL}s",
        pids=[os.getpid(), burner.pid],
        processes=[psutil.Process().name()],
        process_interval="1s",
    )
    anyio.run(run_for, source, RUN_SECONDS, out, backend="asyncio")
    return out


def tag(m: Metric, key: str) -> str | None:
    return m.tag_dict.get(key)


# -- one real run -------------------------------------------------------------------------


def test_one_batch_per_interval_on_a_fixed_schedule(run: Collected) -> None:
    assert 4 <= len(run.batches) <= 5
    # Priming: nothing is emitted before the first interval has elapsed.
    assert run.arrived[0] - run.started >= INTERVAL * 0.9
    gaps = [b - a for a, b in zip(run.arrived, run.arrived[1:], strict=False)]
    assert all(abs(g - INTERVAL) < 0.2 for g in gaps), gaps
    for b in run.batches:  # every row of a pass shares one timestamp
        assert len(set(b.metrics.timestamps)) == 1


def test_cpu_utilization_is_a_primed_ratio(run: Collected) -> None:
    for i in range(len(run.batches)):
        rows = run.metrics(i, "system.cpu.utilization")
        assert rows, f"batch {i} has no CPU utilization"
        assert all(0.0 <= m.value <= 1.0 for m in rows)
        total = [m for m in rows if not m.tags]
        assert len(total) == 1
        # A core is kept busy, so a real ratio cannot be 0; an unprimed one would be.
        assert total[0].value > 0.5 / psutil.cpu_count()
        cores = {tag(m, "cpu.logical_number") for m in rows} - {None}
        assert len(cores) == psutil.cpu_count()
        modes = {m.tag_dict["cpu.mode"]: m.value for m in rows if tag(m, "cpu.mode")}
        assert {"user", "system", "idle"} <= set(modes)
        assert sum(modes.values()) == pytest.approx(1.0, abs=1e-6)
        assert modes["idle"] == pytest.approx(1.0 - total[0].value, abs=0.02)


def test_host_gauges(run: Collected) -> None:
    last = len(run.batches) - 1
    total = psutil.virtual_memory().total
    usage = {
        m.tag_dict["system.memory.state"]: m.value for m in run.metrics(last, "system.memory.usage")
    }
    assert abs(usage["used"] + usage["available"] - total) < 0.05 * total
    assert run.metrics(last, "system.memory.limit")[0].value == total
    assert 0 < run.metrics(last, "system.memory.utilization")[0].value < 1
    assert run.metrics(last, "system.cpu.logical.count")[0].value == psutil.cpu_count()
    assert len(run.metrics(last, "system.cpu.load_average.1m")) == 1
    assert run.metrics(last, "system.process.count")[0].value > 1
    paging = {m.tag_dict["system.paging.state"] for m in run.metrics(last, "system.paging.usage")}
    assert paging == {"used", "free"}
    fs = run.metrics(last, "system.filesystem.utilization")
    assert all(0 <= m.value <= 1 for m in fs)
    assert all(tag(m, "system.filesystem.type") not in ("proc", "sysfs", "tmpfs") for m in fs)
    for m in run.metrics(last, "system.filesystem.usage"):
        assert m.unit == "By" and m.value >= 0
        assert tag(m, "system.filesystem.state") in ("used", "free", "reserved")
    nics = {tag(m, "network.interface.name") for m in run.all("system.network.io")}
    assert "lo" not in nics


def test_counters_are_cumulative_and_monotonic(run: Collected) -> None:
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(list)
    for b in run.batches:
        for m in b.metrics:
            if m.kind is MetricKind.COUNTER:
                series[(m.name, m.tags)].append(m.value)
    assert any(name == "system.network.io" for name, _ in series)
    for key, values in series.items():
        assert values == sorted(values), key
    units = {m.name: m.unit for b in run.batches for m in b.metrics}
    assert units["system.network.io"] == "By"
    assert units["system.cpu.utilization"] == "1"
    assert units["process.memory.usage"] == "By"


def test_first_process_sample_is_primed(run: Collected, burner: subprocess.Popen[bytes]) -> None:
    pid = str(burner.pid)
    cpu = [m.value for m in run.all("process.cpu.utilization") if tag(m, "process.pid") == pid]
    assert len(cpu) == len(run.batches)
    # Busy on one core of N: about 1/N from the very first tick, not 0.
    expected = 1 / psutil.cpu_count()
    assert all(expected * 0.2 < v <= 1.0 for v in cpu), cpu


def test_own_process_by_pid_and_by_name(run: Collected) -> None:
    me = str(os.getpid())
    rss = [m for m in run.all("process.memory.usage") if tag(m, "process.pid") == me]
    # Matched by pid and by name, the process is still tracked (and reported) once.
    assert len(rss) == len(run.batches)
    assert all(m.value > 0 for m in rss)
    assert {tag(m, "process.executable.name") for m in rss} == {psutil.Process().name()}
    cpu = [m for m in run.all("process.cpu.utilization") if tag(m, "process.pid") == me]
    assert len(cpu) == len(run.batches)
    assert all(0 <= m.value <= 1 for m in cpu)
    for name in (
        "process.memory.virtual",
        "process.thread.count",
        "process.open_file_descriptor.count",
        "process.running",
    ):
        assert any(tag(m, "process.pid") == me and m.value > 0 for m in run.all(name)), name


# -- processes ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_process_that_exits_is_reported_not_running_once(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        source = make_source(tmp_path, interval=f"{INTERVAL}s", pids=[child.pid])
        out = Collected()

        async def emit(batch: Batch) -> None:
            await out.emit(batch)
            if len(out.batches) == 1:
                child.kill()
                child.wait(timeout=10)

        await source.start()
        with anyio.move_on_after(2.0):
            await source.run(emit)
    finally:
        child.kill()
        child.wait(timeout=10)
    pid = str(child.pid)
    running = [
        (i, m.value)
        for i in range(len(out.batches))
        for m in out.metrics(i, "process.running")
        if tag(m, "process.pid") == pid
    ]
    assert running[0] == (0, 1.0)
    assert [v for _, v in running].count(0.0) == 1
    assert running[-1][1] == 0.0  # and nothing about it afterwards
    assert len(out.batches) >= 3


def test_a_missing_pid_is_reported_not_running_once(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    tracker = ProcessTracker(pids=[child.pid])
    tracker.attach_explicit()
    rows = []
    for _ in range(2):
        b = MetricBatchBuilder()
        tracker.collect(b)
        rows.append(list(b.build()))
    assert [(m.name, m.value) for m in rows[0]] == [("process.running", 0.0)]
    assert rows[1] == []


def test_name_patterns() -> None:
    match = compile_globs(["nginx", "python*"])
    assert match("nginx") and match("python3.11") and match("python")
    assert not match("nginx-worker") and not match("ipython")
    tracker = ProcessTracker(patterns=[psutil.Process().name()])
    found = tracker.scan()
    assert os.getpid() in {t.proc.pid for t in found}
    tracker.add(found)
    assert os.getpid() not in {t.proc.pid for t in tracker.scan()}  # known pids skipped
    assert ProcessTracker(patterns=["no-such-process-name-*"]).scan() == []


# -- host collector -----------------------------------------------------------------------


def test_unprimed_collector_reports_no_cpu_ratio() -> None:
    host = HostCollector()
    b = MetricBatchBuilder()
    host.collect(b)
    names = {m.name for m in b.build()}
    assert "system.cpu.utilization" not in names  # no false 0.0 from a single reading
    assert "system.memory.usage" in names
    time.sleep(0.1)
    b = MetricBatchBuilder()
    host.collect(b)  # the first collect took the baseline
    assert "system.cpu.utilization" in {m.name for m in b.build()}


def test_filters() -> None:
    host = HostCollector(
        per_cpu=False,
        cpu_modes=False,
        nics_exclude=["*"],
        disks_exclude=["*"],
        mountpoints_exclude=["*"],
    )
    host.refresh()
    host.prime()
    time.sleep(0.05)
    b = MetricBatchBuilder()
    host.collect(b)
    names = [m.name for m in b.build()]
    assert not any(
        n.startswith(("system.network.", "system.disk.", "system.filesystem.")) for n in names
    )
    cpu = [m for m in b.build() if m.name == "system.cpu.utilization"]
    assert all(not m.tags for m in cpu)
    assert host.mountpoints == []


# -- config -------------------------------------------------------------------------------


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        SystemConfig.model_validate({"type": "system", "interval": "soon"})
    with pytest.raises(ValidationError):
        SystemConfig.model_validate({"type": "system", "interval": "0s"})
    with pytest.raises(ValidationError):
        SystemConfig.model_validate({"type": "system", "pids": [-1]})
    with pytest.raises(ValidationError):
        SystemConfig.model_validate({"type": "system", "proceses": ["nginx"]})
    cfg = SystemConfig.model_validate({"type": "system", "interval": "250ms"})
    assert cfg.interval == 0.25 and cfg.process_interval == 10.0
    assert cfg.nics_exclude == ["lo"] and "tmpfs" in cfg.fs_types_exclude


def test_registered_as_a_source_type() -> None:
    assert revopipe_component_types() == [SystemSource]
    spec = load_dict(
        {
            "sources": {"host": {"type": "system", "processes": ["nginx"]}},
            "sinks": {"out": {"type": "console", "inputs": ["host"]}},
        }
    )
    assert spec.components["host"].cls is SystemSource


# -- cgroups ------------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limits(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "cpu.max", "150000 100000\n")
    write(root / "memory.max", "536870912\n")
    write(root / "memory.current", "134217728\n")
    self_cg = tmp_path / "self"
    write(self_cg, "0::/\n")
    lim = read_limits(root, self_cg)
    assert (lim.version, lim.cpu_limit, lim.memory_limit) == (2, 1.5, 536870912)
    assert lim.memory_usage_file == root / "memory.current"


def test_cgroup_v2_nested_takes_the_smallest_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    pod = root / "kubepods" / "pod1"
    write(pod / "cpu.max", "max 100000\n")
    write(pod / "memory.max", "1073741824\n")
    write(pod / "memory.current", "1000\n")
    write(pod / "app" / "cpu.max", "50000 100000\n")
    write(pod / "app" / "memory.max", "max\n")
    write(pod / "app" / "memory.current", "900\n")
    self_cg = tmp_path / "self"
    write(self_cg, "0::/kubepods/pod1/app\n")
    lim = read_limits(root, self_cg)
    assert (lim.cpu_limit, lim.memory_limit) == (0.5, 1073741824)
    assert lim.memory_usage_file == pod / "memory.current"


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "cpu.max", "max 100000\n")
    write(root / "memory.max", "max\n")
    lim = read_limits(root, tmp_path / "missing")
    assert (lim.version, lim.cpu_limit, lim.memory_limit) == (2, None, None)
    assert parse_cpu_max("max") is None and parse_cpu_max("") is None


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "200000\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(root / "memory" / "docker" / "abc" / "memory.limit_in_bytes", "268435456\n")
    write(root / "memory" / "docker" / "abc" / "memory.usage_in_bytes", "67108864\n")
    self_cg = tmp_path / "self"
    write(self_cg, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    lim = read_limits(root, self_cg)
    assert (lim.version, lim.cpu_limit, lim.memory_limit) == (1, 2.0, 268435456)

    collector = CgroupCollector(root, self_cg)
    collector.refresh()
    b = MetricBatchBuilder()
    collector.collect(b)
    got = {m.name: m.value for m in b.build()}
    assert got == {
        "container.cpu.limit": 2.0,
        "container.memory.limit": 268435456,
        "container.memory.usage": 67108864,
        "container.memory.utilization": 0.25,
    }


def test_cgroup_v1_unlimited_emits_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(root / "memory" / "memory.usage_in_bytes", "123\n")
    collector = CgroupCollector(root, tmp_path / "missing")
    collector.refresh()
    assert collector.limits.version == 1
    b = MetricBatchBuilder()
    collector.collect(b)
    assert len(b) == 0
    assert read_limits(tmp_path / "nothing-here").version == 0


def test_source_reports_container_metrics_from_an_injected_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "cpu.max", "100000 100000\n")
    write(root / "memory.max", "1000\n")
    write(root / "memory.current", "250\n")

    class Contained(SystemSource):
        cgroup_root = root
        self_cgroup = tmp_path / "missing"

    source = Contained(make_source(tmp_path).config, make_source(tmp_path).context)

    async def one_tick() -> Batch:
        await source.start()
        return source.collect()

    batch = anyio.run(one_tick)
    got = {m.name: m.value for m in batch.metrics if m.name.startswith("container.")}
    assert got == {
        "container.cpu.limit": 1.0,
        "container.memory.limit": 1000,
        "container.memory.usage": 250,
        "container.memory.utilization": 0.25,
    }
