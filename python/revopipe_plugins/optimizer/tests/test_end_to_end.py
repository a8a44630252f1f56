"""The optimizer behind real sources: `revopipe run` with a `memory` source watching a
child with a planted leak and one with a stable working set (only the leak becomes a
recommendation, read with `revopipe recommendations` while it runs and from the file after
it stopped); and a `profiler` source in an embedded pipeline whose hot function is ranked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import tomli_w

import revopipe
from revopipe_plugins.memory.tests.test_memory import (  # the fixture, too
    LEAKY,
    STABLE,
    children,  # noqa: F401
    spawn,
)

REVOPIPE = [sys.executable, "-m", "revopipe"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REVOPIPE, *args], capture_output=True, text=True, timeout=120, check=False
    )


def _leak_keys(rows: list[dict[str, Any]]) -> set[str]:
    return {r["key"] for r in rows if r["detector"] == "memory_leak"}


def test_planted_leak_is_recommended_and_the_stable_process_is_not(
    tmp_path: Path,
    children: list[subprocess.Popen[str]],  # noqa: F811 (the fixture imported above)
) -> None:
    leaky = spawn(LEAKY, "optimizer-e2e-leaky")
    stable = spawn(STABLE, "optimizer-e2e-stable")
    children += [leaky, stable]
    config = tmp_path / "pipeline.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "pipeline": {"data_dir": str(tmp_path / "data"), "api": "127.0.0.1:0"},
                "sources": {
                    "mem": {"type": "memory", "pids": [leaky.pid, stable.pid], "interval": "100ms"}
                },
                "processors": {
                    "opt": {
                        "type": "optimizer",
                        "inputs": ["mem"],
                        "evaluate_every": "1s",
                        "changepoints": [],
                        "trends": [],
                        "leaks": {"min_points": 40},
                    }
                },
                "sinks": {"out": {"type": "jsonl", "inputs": ["opt"], "path": "recs.jsonl"}},
            }
        )
    )
    run = subprocess.Popen([*REVOPIPE, "run", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            time.sleep(1.0)
            r = _cli("recommendations", "-c", str(config), "--json")
            if r.returncode == 0:
                rows = json.loads(r.stdout)
                if _leak_keys(rows):
                    break
        # the stable child had as long and as many readings as the leaky one
        time.sleep(2.0)
        r = _cli("recommendations", "-c", str(config), "--json", "--all")
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        # exactly one leak, the planted one (the executable's name depends on the venv)
        (key,) = _leak_keys(rows)
        assert key.startswith("leak:process.memory.usage{") and f'process.pid="{leaky.pid}"' in key
        (rec,) = [x for x in rows if x["detector"] == "memory_leak"]
        assert rec["priority"] in ("high", "medium") and rec["confidence"] > 0.99
        assert "steadily" in rec["evidence"]["reason"]
        human = _cli("recommendations", "-c", str(config))
        assert f"process {leaky.pid}: process.memory.usage grows steadily" in human.stdout
        assert "slope_per_hour" in human.stdout
    finally:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    # stopped: the CLI reads the optimizer's file instead, and says so
    after = _cli("recommendations", "-c", str(config))
    assert after.returncode == 0, after.stderr
    assert "pipeline not running" in after.stdout
    assert f"process {leaky.pid}" in after.stdout
    # and the event went downstream once, with its key and evidence
    events = [
        json.loads(line)
        for line in (tmp_path / "data" / "recs.jsonl").read_text().splitlines()
        if '"recommendation"' in line
    ]
    leak_events = [e for e in events if e["key"].startswith("leak:")]
    assert len(leak_events) == 1 and str(leaky.pid) in leak_events[0]["key"]
    assert leak_events[0]["evidence"]["detector"] == "memory_leak"


def _hot_loop(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(5000):
            x += i * i


@pytest.mark.anyio
async def test_profiler_hot_function_becomes_a_recommendation(tmp_path: Path) -> None:
    pipeline = revopipe.Pipeline.from_toml(
        f"""
[pipeline]
data_dir = "{tmp_path}"
[sources.prof]
type = "profiler"
window = "300ms"
[processors.opt]
type = "optimizer"
inputs = ["prof"]
evaluate_every = "500ms"
changepoints = []
trends = []
[sinks.hole]
type = "blackhole"
inputs = ["opt"]
"""
    )
    stop = threading.Event()
    worker = threading.Thread(target=_hot_loop, args=(stop,), name="hot-worker")
    worker.start()
    try:
        async with pipeline.running():
            with anyio.fail_after(30):
                while True:
                    await anyio.sleep(0.5)
                    recs = await pipeline.control("opt", "recommendations", {})
                    hot = [r for r in recs if r["detector"] == "hot_function"]
                    if hot:
                        break
    finally:
        stop.set()
        worker.join(30)
    assert hot[0]["title"].split(" takes ")[0].endswith(":_hot_loop"), hot
    assert hot[0]["evidence"]["series"].endswith(f'process.pid="{os.getpid()}"}}')
