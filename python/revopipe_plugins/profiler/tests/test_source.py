"""The `profiler` source in a real embedded pipeline, and its config and control action."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import revopipe
from revopipe.components import ControlError
from revopipe.testing import collect, make
from revopipe_plugins.profiler.report import functions_from_stacks
from revopipe_plugins.profiler.source import ProfilerSource

pytestmark = pytest.mark.anyio


def busy_service_work(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(2000):
            x += i * i


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_in_an_embedded_pipeline(tmp_path: Path) -> None:
    pipeline = revopipe.Pipeline.from_toml(
        f"""
[pipeline]
data_dir = "{tmp_path}"
[sources.prof]
type = "profiler"
rate = 200
window = "400ms"
top = 5
[sinks.file]
type = "jsonl"
inputs = ["prof"]
path = "out.jsonl"
"""
    )
    stop = threading.Event()
    worker = threading.Thread(target=busy_service_work, args=(stop,), name="service-worker")
    worker.start()
    try:
        async with pipeline.running():
            await anyio.sleep(1.5)
            speedscope = await pipeline.control("prof", "profile", {"format": "speedscope"})
            collapsed = await pipeline.control("prof", "profile", {"format": ["collapsed"]})
    finally:
        stop.set()
        worker.join(30)
    rows = read_jsonl(tmp_path / "out.jsonl")
    profiles = [r for r in rows if r["type"] == "profile"]
    assert len(profiles) >= 2
    pid = str(os.getpid())
    assert all(p["tags"] == {"process.pid": pid} and p["end_ns"] > p["start_ns"] for p in profiles)
    # the busy service thread's function is on top of the merged windows
    merged: dict[str, int] = {}
    for p in profiles:
        for stack, n in p["samples"].items():
            merged[stack] = merged.get(stack, 0) + n
    ranked = functions_from_stacks(merged)
    assert ranked[0].function.endswith(":busy_service_work"), ranked[:3]
    assert any(s.startswith("service-worker;") for s in merged)

    metrics = [r for r in rows if r["type"] == "metric"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for m in metrics:
        by_name.setdefault(m["name"], []).append(m)
    samples = by_name["profiler.samples"]
    assert samples[0]["kind"] == "counter" and samples[0]["unit"] == "{sample}"
    values = [m["value"] for m in samples]
    assert values == sorted(values) and values[-1] > 0  # cumulative
    assert all(0 <= m["value"] < 1 and m["unit"] == "1" for m in by_name["profiler.overhead"])
    shares = by_name["profiler.function.self_share"]
    assert {"code.function", "process.pid"} == set(shares[0]["tags"])
    assert all(0 <= m["value"] <= 1 for m in shares + by_name["profiler.function.total_share"])
    # the top rows of the last full window name the busy thread's code
    last_ts = max(m["timestamp"] for m in shares)
    last = sorted(
        (m for m in shares if m["timestamp"] == last_ts), key=lambda m: -float(m["value"])
    )
    assert len(last) <= 5
    assert last[0]["tags"]["code.function"].endswith(":busy_service_work"), last[:3]

    # control action: the latest window in both formats
    assert speedscope["$schema"].startswith("https://www.speedscope.app/")
    assert any(p["name"] == "service-worker" for p in speedscope["profiles"])
    assert isinstance(collapsed, str) and "service-worker;" in collapsed


async def test_control_before_a_window_and_bad_format(tmp_path: Path) -> None:
    src = make(ProfilerSource, {"window": "1h"}, tmp_path, name="prof")
    await src.start()
    try:
        with pytest.raises(ControlError) as info:
            await src.control("profile", {})
        assert info.value.status == 409 and "no window" in info.value.message
        with pytest.raises(ControlError) as info:
            await src.control("profile", {"format": "pprof"})
        assert info.value.status == 400 and "format" in info.value.message
    finally:
        await src.stop()
    assert not any(t.name.startswith("revopipe.profiler") for t in threading.enumerate())


async def test_one_batch_per_window_with_source_helpers(tmp_path: Path) -> None:
    src = make(ProfilerSource, {"window": "200ms", "top": 3}, tmp_path)
    stop = threading.Event()
    worker = threading.Thread(target=busy_service_work, args=(stop,), name="w")
    worker.start()
    try:
        batches = await collect(src, 0.9)
    finally:
        stop.set()
        worker.join(30)
    assert batches
    for b in batches:
        assert len(b.events) == 1 and b.events[0].type == "profile"
        names = list(b.metrics.names)
        assert names.count("profiler.samples") == 1
        assert names.count("profiler.function.self_share") <= 3


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": 5000}, "rate"),
        ({"window": "soon"}, "window"),
        ({"top": 0}, "top"),
    ],
)
def test_bad_config_names_the_key(config: dict[str, object], key: str, tmp_path: Path) -> None:
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in config.items())
    with pytest.raises(revopipe.ConfigInvalid) as info:
        revopipe.Pipeline.from_toml(
            f"""
[pipeline]
data_dir = "{tmp_path}"
[sources.prof]
type = "profiler"
{body}
[sinks.out]
type = "blackhole"
inputs = ["prof"]
"""
        )
    text = str(info.value)
    assert "prof" in text and key in text, text


def test_sampling_stays_off_the_event_loop_thread(tmp_path: Path) -> None:
    # the source's sampler is a thread of its own: stopping it leaves nothing behind
    async def main() -> None:
        src = make(ProfilerSource, {}, tmp_path)
        await src.start()
        assert src._sampler.running
        assert src._sampler._thread is not threading.current_thread()
        await src.stop()
        assert not src._sampler.running

    anyio.run(main)
