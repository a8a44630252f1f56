"""A component that raises is isolated, restarted and counted; the rest keeps flowing."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from revopipe import Batch, HealthStatus
from tests.helpers import pipeline, values

pytestmark = pytest.mark.anyio


async def test_raising_processor_is_restarted_and_other_branches_flow(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {
                "gen": {"type": "generate", "count": 300, "batch_size": 10, "interval": "0s"}
            },
            "processors": {
                "bad": {"type": "flaky", "inputs": ["gen"], "fail_every": 4, "fail_always_on": 155}
            },
            "sinks": {
                "via_bad": {"type": "collect", "inputs": ["bad"]},
                "direct": {"type": "collect", "inputs": ["gen"]},
            },
        },
        collected,
    )
    await p.run()
    stats = {s["name"]: s for s in p.snapshot()}
    # the healthy branch saw everything, in order
    assert values(collected["direct"]) == [float(i) for i in range(300)]
    # transient failures were retried on a fresh instance; the poison batch (150..159)
    # failed twice and went to the dead-letter file instead of vanishing
    through = values(collected["via_bad"])
    assert through == [float(i) for i in range(300) if not 150 <= i < 160]
    bad = stats["bad"]
    assert bad["errors"] >= 2 and bad["restarts"] == bad["errors"]
    assert bad["dead_lettered"] == 10
    assert bad["health"] in (HealthStatus.DEGRADED, HealthStatus.UNHEALTHY)
    assert bad["last_error"].startswith(("RuntimeError", "ValueError"))
    dead = [json.loads(line) for line in (tmp_path / "dead_letter" / "bad.jsonl").open()]
    assert [d["event"]["value"] for d in dead] == [float(i) for i in range(150, 160)]
    assert all("poison batch 155" in d["error"] for d in dead)
    # nothing accepted was lost: every event is either delivered or dead-lettered
    assert len(through) + bad["dead_lettered"] == stats["gen"]["events_out"]
    assert stats["direct"]["health"] == HealthStatus.HEALTHY


async def test_failing_sink_is_retried_then_delivers(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {
                "gen": {"type": "generate", "count": 50, "batch_size": 10, "interval": "0s"}
            },
            "sinks": {
                "out": {"type": "collect", "inputs": ["gen"], "fail_first": 3, "max_retries": 5}
            },
        },
        collected,
    )
    await p.run()
    s = {s["name"]: s for s in p.snapshot()}["out"]
    assert values(collected["out"]) == [float(i) for i in range(50)]
    assert (s["errors"], s["retries"], s["dead_lettered"]) == (3, 3, 0)


async def test_sink_down_for_good_dead_letters_instead_of_losing(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {
                "gen": {"type": "generate", "count": 20, "batch_size": 10, "interval": "0s"}
            },
            "sinks": {
                "out": {"type": "collect", "inputs": ["gen"], "fail_first": 1000, "max_retries": 2}
            },
        },
        collected,
    )
    await p.run()
    s = {s["name"]: s for s in p.snapshot()}["out"]
    assert s["dead_lettered"] == 20 and s["errors"] == 6
    lines = (tmp_path / "dead_letter" / "out.jsonl").read_text().splitlines()
    assert len(lines) == 20 and "ConnectionError: sink is down" in lines[0]


async def test_crashing_source_restarts_with_backoff(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"src": {"type": "crashing", "crashes": 2}},
            "sinks": {"out": {"type": "collect", "inputs": ["src"]}},
        },
        collected,
    )
    async with p.running():
        with anyio.fail_after(10):
            while len(values(collected.get("out", []))) < 3:
                await anyio.sleep(0.01)
    s = {s["name"]: s for s in p.snapshot()}["src"]
    assert values(collected["out"]) == [1.0, 2.0, 3.0]
    assert s["restarts"] == 2 and s["errors"] == 2
    assert "OSError: device vanished" in s["last_error"]
