"""The `memory` source against real processes: a child with a planted leak is flagged by
the optimizer's leak detector and a child with a stable working set is not, over the same
run of a real embedded pipeline; tracemalloc names the leaking line; processes that are
gone, patterns that match nothing and invalid patterns are handled."""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from revopipe import ConfigInvalid, Pipeline, embed
from revopipe.testing import collect, make
from revopipe_plugins.memory import MemorySource, revopipe_component_types
from revopipe_plugins.optimizer.leak import assess

KiB = 1024
MiB = 1024 * KiB

# Retains 200 KiB every 0.1 s (bounded at 150 MiB), written so the pages are resident.
LEAKY = """
import sys, time
# {marker}
hoard = []
print("ready", flush=True)
while len(hoard) < 750:
    hoard.append(b"x" * (200 * 1024))
    time.sleep(0.1)
time.sleep(3600)
"""

# A collected working set: builds up 8 chunks of 256 KiB (one every 0.07 s), drops them all,
# and again, forever: allocates and frees the same amount each cycle, so its RSS is a
# sawtooth with a fixed floor. The fixed mmap threshold (glibc) returns each freed chunk to
# the kernel at once instead of keeping it in the heap, so the RSS really falls back.
STABLE = """
import sys, time
# {marker}
work = []
print("ready", flush=True)
while True:
    work.append(b"x" * (256 * 1024))
    if len(work) == 8:
        work.clear()
    time.sleep(0.07)
"""


def spawn(script: str, marker: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script.format(marker=marker)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def series(rows: list[dict[str, Any]], name: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per pid: (times in seconds, values) of metric `name`."""
    out: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in rows:
        if r["type"] == "metric" and r["name"] == name:
            t, v = out[r["tags"]["process.pid"]]
            t.append(r["timestamp"] / 1e9)
            v.append(r["value"])
    return dict(out)


def pipeline_config(tmp_path: Path, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "pipeline": {"data_dir": str(tmp_path)},
        "sources": {"mem": {"type": "memory", **source}},
        "sinks": {"out": {"type": "jsonl", "inputs": ["mem"], "path": "out.jsonl"}},
    }


def test_registered() -> None:
    assert revopipe_component_types() == [MemorySource]


def test_planted_leak_is_flagged_and_stable_working_set_is_not(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    marker = f"revopipe-memtest-{uuid.uuid4().hex}"
    leaky = spawn(LEAKY, f"{marker}-leaky")
    children.append(leaky)
    stable = spawn(STABLE, f"{marker}-stable")
    children.append(stable)
    # One by pid, one found by a regex over the command line: both ways of choosing.
    cfg = pipeline_config(
        tmp_path, {"interval": "100ms", "pids": [leaky.pid], "match": [f"{marker}-stable"]}
    )
    with embed(cfg):
        time.sleep(9.0)
    rss = series(read_jsonl(tmp_path / "out.jsonl"), "process.memory.usage")
    assert set(rss) == {str(leaky.pid), str(stable.pid)}, "own process not watched: pids set"
    leak_t, leak_v = rss[str(leaky.pid)]
    stable_t, stable_v = rss[str(stable.pid)]
    # The same duration for both: one batch per tick carries both.
    assert leak_t == stable_t and len(leak_t) >= 40

    verdict = assess(leak_t, leak_v)
    assert verdict.leaking, verdict.reason
    assert verdict.slope > 0 and verdict.growth > 2 * MiB
    assert verdict.confidence > 0.99 and verdict.reason.startswith("grows ")

    verdict = assess(stable_t, stable_v)
    assert not verdict.leaking, verdict.reason
    if platform.libc_ver()[0] == "glibc":
        # The working set really rose and fell (not a flat line the detector cannot miss).
        assert max(stable_v) - min(stable_v) > MiB

    virtual = series(read_jsonl(tmp_path / "out.jsonl"), "process.memory.virtual")
    assert all(v > 0 for v in virtual[str(leaky.pid)][1])


HOARD: list[bytes] = []


def planted_leak(n: int) -> None:
    for _ in range(n):
        HOARD.append(b"z" * 50_000)  # planted leak
        time.sleep(0.005)


def planted_line() -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith("# planted leak"))


def test_tracemalloc_names_the_leaking_line(tmp_path: Path) -> None:
    assert not tracemalloc.is_tracing()
    cfg = pipeline_config(tmp_path, {"interval": "200ms", "tracemalloc": True, "top_sites": 5})
    try:
        with embed(cfg):
            planted_leak(300)  # 15 MB over ~2 s, from this thread
            time.sleep(0.5)
        assert not tracemalloc.is_tracing(), "the source stops what it started"
    finally:
        HOARD.clear()
    rows = [r for r in read_jsonl(tmp_path / "out.jsonl") if r["type"] == "metric"]
    own = str(os.getpid())
    growth: dict[str, float] = defaultdict(float)
    for r in rows:
        if r["name"] == "python.tracemalloc.site.growth":
            assert r["unit"] == "By" and r["tags"]["process.pid"] == own
            growth[r["tags"]["code.site"]] += r["value"]
    top_site = max(growth, key=lambda s: growth[s])
    assert top_site == f"{__file__}:{planted_line()}"
    assert growth[top_site] > 5 * MiB
    # The snapshots and imports are filtered out.
    assert not any("tracemalloc.py" in s or "importlib" in s for s in growth)
    names = {r["name"] for r in rows}
    assert {"python.tracemalloc.traced", "python.tracemalloc.peak"} <= names
    traced = [r["value"] for r in rows if r["name"] == "python.tracemalloc.traced"]
    assert max(traced) > 10 * MiB


@pytest.mark.anyio
async def test_processes_that_are_gone_are_dropped_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # Exits during the run and is not reaped meanwhile: a zombie is gone too.
    brief = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
    try:
        src = make(
            MemorySource,
            {"interval": "100ms", "pids": [dead.pid, brief.pid, os.getpid()]},
            tmp_path,
        )
        with caplog.at_level(logging.INFO):
            batches = await collect(src, 2.5)
    finally:
        brief.kill()
        brief.wait()
    pids = [
        {dict(m.tags)["process.pid"] for m in b.metrics if m.name == "process.memory.usage"}
        for b in batches
    ]
    assert all(str(dead.pid) not in p for p in pids)
    assert str(brief.pid) in pids[0] and str(brief.pid) not in pids[-1]
    assert all(str(os.getpid()) in p for p in pids), "the others keep being reported"
    messages = [r.getMessage() for r in caplog.records]
    assert sum(f"pid {dead.pid} from `pids` does not exist" in m for m in messages) == 1
    assert sum(f"(pid {brief.pid}) is gone" in m for m in messages) == 1


@pytest.mark.anyio
async def test_pattern_without_match_reports_nothing_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pattern = f"^no-such-process-{uuid.uuid4().hex}$"
    src = make(MemorySource, {"interval": "100ms", "match": [pattern]}, tmp_path)
    with caplog.at_level(logging.INFO):
        batches = await collect(src, 0.45)
    assert batches
    pids = {dict(m.tags)["process.pid"] for b in batches for m in b.metrics}
    assert pids == {str(os.getpid())}  # `pids` empty: the own process only
    assert any(
        pattern in r.getMessage() and "no process matches" in r.getMessage() for r in caplog.records
    )


@pytest.mark.anyio
async def test_own_python_heap_metrics(tmp_path: Path) -> None:
    src = make(MemorySource, {"interval": "100ms", "gc_objects": True}, tmp_path)
    gc.collect()
    batches = await collect(src, 0.25)
    rows = {(m.name, dict(m.tags).get("gc.generation")): m for m in batches[0].metrics}
    assert rows[("python.heap.allocated_blocks", None)].value > 1000
    assert rows[("python.gc.objects", None)].value > 1000
    assert rows[("python.gc.collections", "2")].value >= 1
    assert {g for n, g in rows if n == "python.gc.uncollectable"} == {"0", "1", "2"}
    assert rows[("process.memory.usage", None)].unit == "By"
    assert dict(rows[("process.memory.usage", None)].tags)["process.pid"] == str(os.getpid())
    # Off by default: the walk over every object pauses the interpreter.
    src = make(MemorySource, {"interval": "100ms"}, tmp_path)
    batches = await collect(src, 0.15)
    assert "python.gc.objects" not in {m.name for m in batches[0].metrics}


def test_invalid_regex_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as info:
        Pipeline.from_dict(pipeline_config(tmp_path, {"match": ["ok", "leak(y"]}))
    text = str(info.value)
    assert "match" in text and "'leak(y' is not a valid regular expression" in text
    with pytest.raises(ValidationError, match=r"match\[1\]"):
        make(MemorySource, {"match": ["ok", "["]}, tmp_path)
