"""A real pipeline `statsd -> aggregate -> jsonl` on loopback: the `statsd` PyPI client
sends a known workload (counters with sample rates, gauges with relative updates, timers,
sets, multi-metric packets) and the aggregated counts, sums and percentiles are those of
what the client put on the wire; DogStatsD lines sent on a raw socket come out right."""

from __future__ import annotations

import json
import math
import random
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import statsd

from revopipe import Pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

Key = tuple[str, tuple[tuple[str, str], ...]]


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


async def run_pipeline(
    tmp_path: Path, send: Callable[[int], int]
) -> tuple[dict[Key, float], dict[str, Any]]:
    """Runs the pipeline, calls `send(port)` in a thread (it returns the lines it sent),
    waits until the source has read them all, drains; the aggregated values by
    (name, tags), and the source's stats."""
    port = free_udp_port()
    p = Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {
                "in": {"type": "statsd", "address": f"127.0.0.1:{port}", "flush_interval": "50ms"}
            },
            # One window for the whole run, whatever the wall clock: it closes at the drain.
            "processors": {"stats": {"type": "aggregate", "inputs": ["in"], "window": "1000000h"}},
            "sinks": {"out": {"type": "jsonl", "inputs": ["stats"], "path": "out.jsonl"}},
        }
    )
    async with p.running():
        lines = await anyio.to_thread.run_sync(send, port)
        stats = p.stats["in"]
        with anyio.fail_after(20):
            while stats.events_in < lines:
                await anyio.sleep(0.02)
    assert stats.events_in == lines, "more lines arrived than were sent"
    out: dict[Key, float] = {}
    for text in (tmp_path / "out.jsonl").read_text().splitlines():
        row = json.loads(text)
        if row["type"] == "metric":
            out[(row["name"], tuple(sorted(row["tags"].items())))] = row["value"]
    return out, stats.snapshot()


class RecordingClient(statsd.StatsClient):
    """The standard client, remembering each datagram it sends (sampling included) and
    pausing now and then so loopback never drops one."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.sent: list[str] = []

    def _send(self, data: str) -> None:
        self.sent.append(data)
        super()._send(data)
        if len(self.sent) % 25 == 0:
            time.sleep(0.002)


class Reference:
    """What the workload amounts to, read back from the datagrams the client sent."""

    def __init__(self, datagrams: list[str]) -> None:
        self.counters: dict[str, float] = defaultdict(float)
        self.timers: dict[str, list[float]] = defaultdict(list)
        self.gauges: dict[str, list[float]] = defaultdict(list)
        self.sets: dict[str, set[str]] = defaultdict(set)
        self.lines = 0
        for datagram in datagrams:
            for line in datagram.split("\n"):
                self.lines += 1
                name, rest = line.split(":", 1)
                value, kind, *fields = rest.split("|")
                rate = float(fields[0][1:]) if fields else 1.0
                if kind == "c":
                    self.counters[name] += float(value) / rate
                elif kind == "ms":
                    self.timers[name] += [float(value)] * round(1 / rate)
                elif kind == "g":
                    current = self.gauges[name][-1] if self.gauges[name] else 0.0
                    relative = value[0] in "+-"
                    self.gauges[name].append(current + float(value) if relative else float(value))
                else:
                    self.sets[name].add(value)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def test_standard_client_workload_is_exact(tmp_path: Path) -> None:
    rng = random.Random(4)
    clients: list[RecordingClient] = []

    def send(port: int) -> int:
        c = RecordingClient(port)
        clients.append(c)
        random.seed(11)  # the client samples with the global `random`
        for _ in range(300):
            c.incr("app.requests")
        for _ in range(200):
            c.incr("app.bytes", rng.randint(1, 100))
            c.incr("app.sampled", rate=0.5)
        c.gauge("app.queue", 10)
        for _ in range(60):
            c.gauge("app.queue", rng.randint(-5, 5), delta=True)
        c.gauge("app.temp", -5)  # sent as "0|g" then "-5|g" in one packet
        for _ in range(600):
            c.timing("app.latency", rng.lognormvariate(3.0, 0.8))
            c.timing("app.sampled_latency", rng.uniform(1, 50), rate=0.25)
        for _ in range(150):
            c.set("app.users", f"user{rng.randint(0, 40)}")
        # multi-metric packets (the client packs a pipeline into 512-byte datagrams)
        for _ in range(20):
            with c.pipeline() as pipe:
                for _ in range(10):
                    pipe.incr("app.piped")
                    pipe.timing("app.piped_latency", rng.uniform(0, 10))
        return Reference(c.sent).lines

    out, stats = await run_pipeline(tmp_path, send)
    ref = Reference(clients[0].sent)
    assert stats["errors"] == 0 and stats["dropped"] == 0

    assert ref.counters["app.requests"] == 300
    assert ref.counters["app.piped"] == 200
    for name, total in ref.counters.items():
        assert out[(f"{name}.sum", ())] == total, name
    assert 50 < ref.counters["app.sampled"] / 2 < 150  # the client sent about half

    for name, seen in ref.gauges.items():
        assert out[(f"{name}.last", ())] == seen[-1]
        assert out[(f"{name}.min", ())] == min(seen)
        assert out[(f"{name}.max", ())] == max(seen)
    assert out[("app.temp.last", ())] == -5

    for name, recorded in ref.timers.items():
        ordered = sorted(recorded)
        assert out[(f"{name}.count", ())] == len(ordered), name
        assert out[(f"{name}.sum", ())] == pytest.approx(sum(ordered), rel=1e-12)
        assert out[(f"{name}.min", ())] == ordered[0]
        assert out[(f"{name}.max", ())] == ordered[-1]
        for q, stat in [(50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99_9")]:
            # 3 significant digits, recorded in steps of 1 µs (0.001 ms)
            assert out[(f"{name}.{stat}", ())] == pytest.approx(
                percentile(ordered, q), rel=1e-3, abs=1e-3
            ), (name, stat)
    assert out[("app.sampled_latency.count", ())] % 4 == 0

    assert out[("app.users.distinct", ())] == len(ref.sets["app.users"])


async def test_dogstatsd_lines_on_a_raw_socket(tmp_path: Path) -> None:
    now_s = int(time.time())
    lines = [
        b"dd.hist:1:2:3|h|#env:prod,canary",
        b"dd.dist:5|d|@0.5|#env:prod",
        b"dd.count:2|c|#b:2,a:1\ndd.count:3|c|#a:1,b:2",
        b"dd.gauge:7|g|T%d" % now_s,
        b"dd.ctr:1|c|c:abc123|#team:x",
        b"dd.timer:250|ms|@0.1",
        b"dd.set:a:b:a|s",
        b"_e{5,4}:title|text|#env:prod",
        b"_sc|db.up|0",
        b"not a metric",
        b"dd.count:-1|c|#a:1,b:2",
    ]

    def send(port: int) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for datagram in lines:
            s.sendto(datagram, ("127.0.0.1", port))
        s.close()
        return sum(d.count(b"\n") + 1 for d in lines)

    out, stats = await run_pipeline(tmp_path, send)
    env = (("canary", ""), ("env", "prod"))
    assert out[("dd.hist.count", env)] == 3
    assert out[("dd.hist.sum", env)] == 6
    assert out[("dd.dist.count", (("env", "prod"),))] == 2  # one value at rate 0.5
    assert out[("dd.dist.sum", (("env", "prod"),))] == 10
    assert out[("dd.count.sum", (("a", "1"), ("b", "2")))] == 5  # one series, any tag order
    assert out[("dd.gauge.last", ())] == 7
    assert out[("dd.ctr.sum", (("container.id", "abc123"), ("team", "x")))] == 1
    assert out[("dd.timer.count", ())] == 10
    assert out[("dd.timer.p50", ())] == pytest.approx(250, rel=1e-3)
    assert out[("dd.set.distinct", ())] == 2
    assert stats["errors"] == 2  # "not a metric" and the negative counter increment
    assert stats["dropped"] == 2  # the event and the service check
    assert "negative counter increment" in stats["last_error"] or "no ':'" in stats["last_error"]
