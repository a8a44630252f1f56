"""Alert detection latency, end to end: from the POST of the sample that crosses a threshold
to the webhook's arrival at a real receiver, with `for = 0`. revopipe runs as its own
process (`python -m revopipe run`), fed by its `http` source on loopback.

    python benches/bench_alert_latency.py [--cases 200] [--quick] [--no-aggregate]

Configurations, measured one after the other in the same run:

- defaults: `evaluate_every` 1s, route `group_wait` 2s, `group_interval` 1m; each case is
  its own group (group_by = ["alertname", "case"]) so group_interval never holds one back.
- tuned: `evaluate_every` 100ms, `group_wait` 0s.
- aggregated: tuned, behind `aggregate` with a 1s window (default 1s grace), rule on
  `last(...)`: the path a rule on windowed stats takes.

Samples are spaced 50-300 ms at random so their arrival is uniformly phased against the
evaluation tick. The peer, Prometheus + Alertmanager, is NOT measured: its figure is
computed from documented defaults (scrape_interval 1m, evaluation_interval 1m, group_wait
30s), since a single measured sample with those defaults takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from aiohttp import web

THRESHOLD = 10.0
METRIC = "latency.probe"

# Prometheus + Alertmanager documented defaults (seconds): global scrape_interval and
# evaluation_interval 1m, route group_wait 30s. A uniformly-phased sample waits on average
# half a scrape and half an evaluation interval, and at worst a whole one of each.
PROM_SCRAPE = 60.0
PROM_EVAL = 60.0
AM_GROUP_WAIT = 30.0
PEER_TYPICAL = PROM_SCRAPE / 2 + PROM_EVAL / 2 + AM_GROUP_WAIT
PEER_WORST = PROM_SCRAPE + PROM_EVAL + AM_GROUP_WAIT


@dataclass
class Setup:
    key: str
    label: str
    evaluate_every: str
    group_wait: str
    aggregate: bool = False
    budget: float = 10.0  # seconds to wait for the last alerts after the last send


SETUPS = [
    Setup("defaults", "revopipe defaults (evaluate 1s, group_wait 2s)", "1s", "2s"),
    Setup("tuned", "revopipe tuned (evaluate 100ms, group_wait 0s)", "100ms", "0s"),
    Setup(
        "aggregated",
        "tuned, behind aggregate (1s window, 1s grace), last()",
        "100ms",
        "0s",
        aggregate=True,
    ),
]


@dataclass
class Receiver:
    """Arrival time (perf_counter) of the first firing notification per (setup, case)."""

    arrivals: dict[tuple[str, str], float] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        at = time.perf_counter()
        body = await request.json()
        setup = request.match_info["setup"]
        for alert in body.get("alerts", []):
            case = alert.get("labels", {}).get("case")
            if alert.get("status") == "firing" and case is not None:
                self.arrivals.setdefault((setup, case), at)
        return web.Response(text="ok")

    def count(self, setup: str) -> int:
        return sum(1 for s, _ in self.arrivals if s == setup)


@contextlib.asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{setup}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pipeline(setup: Setup, data_dir: Path, port: int, webhook: str) -> dict[str, Any]:
    stat = "last" if setup.aggregate else "value"
    alerts: dict[str, Any] = {
        "type": "alerts",
        "inputs": ["stats" if setup.aggregate else "in"],
        "default_rules": False,
        "evaluate_every": setup.evaluate_every,
        "rules": [
            {
                "name": "probe_high",
                "expr": f"{stat}({METRIC}) > {THRESHOLD:g}",
                "for": "0s",
                "severity": "critical",
            }
        ],
        "channels": {"hook": {"type": "webhook", "url": f"{webhook}/{setup.key}"}},
        # group_interval stays at its default (1m): one group per case keeps it out of play
        "route": {
            "channel": "hook",
            "group_by": ["alertname", "case"],
            "group_wait": setup.group_wait,
        },
    }
    processors: dict[str, Any] = {"alerts": alerts}
    if setup.aggregate:
        processors = {
            "stats": {"type": "aggregate", "inputs": ["in"], "window": "1s", "grace": "1s"},
            **processors,
        }
    return {
        "pipeline": {"data_dir": str(data_dir), "drain_timeout": "5s"},
        "sources": {"in": {"type": "http", "address": f"127.0.0.1:{port}"}},
        "processors": processors,
        "sinks": {"out": {"type": "blackhole", "inputs": ["alerts"]}},
    }


@contextlib.contextmanager
def revopipe(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m revopipe run config`, in its own session so a Ctrl-C at the terminal
    reaches only this script, which then drains and, if need be, kills the child."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "revopipe", "run", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def line(case: str, value: float) -> bytes:
    return (
        f'{{"name": "{METRIC}", "value": {value}, "unit": "ms", "tags": {{"case": "{case}"}}}}\n'
    ).encode()


async def wait_ready(client: httpx.AsyncClient, url: str, proc: subprocess.Popen[bytes]) -> None:
    """Until the source answers: a below-threshold sample, which never fires."""
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"revopipe exited with {proc.returncode} before listening")
        try:
            r = await client.post(url, content=line("warmup", 0.0))
            r.raise_for_status()
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError("revopipe's http source did not listen within 30 s") from None
            await asyncio.sleep(0.05)


async def measure(
    setup: Setup, receiver: Receiver, webhook: str, cases: int, rng: random.Random, tmp: Path
) -> tuple[list[float], int]:
    """Latencies in seconds of the cases that arrived, and how many were sent."""
    work = tmp / setup.key
    work.mkdir()
    port = free_port()
    config = work / "pipeline.toml"
    config.write_text(tomli_w.dumps(pipeline(setup, work / "data", port, webhook)))
    url = f"http://127.0.0.1:{port}/ingest"
    sent: dict[str, float] = {}
    with revopipe(config, work / "revopipe.log") as proc:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            try:
                await wait_ready(client, url, proc)
            except RuntimeError:
                sys.stderr.write((work / "revopipe.log").read_text(errors="replace")[-3000:])
                raise
            await asyncio.sleep(1.0)  # past startup: first evaluations, outbox running
            for i in range(cases):
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                case = str(i)
                sent[case] = time.perf_counter()
                r = await client.post(url, content=line(case, 50.0 + i % 7))
                r.raise_for_status()
            deadline = time.monotonic() + setup.budget
            while receiver.count(setup.key) < cases and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    latencies = [
        receiver.arrivals[(setup.key, c)] - t0
        for c, t0 in sent.items()
        if (setup.key, c) in receiver.arrivals
    ]
    return latencies, len(sent)


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def run(args: argparse.Namespace) -> None:
    # SIGTERM cleans up like Ctrl-C: cancelling unwinds the child and the temp dir
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    rng = random.Random(args.seed)
    setups = [s for s in SETUPS if args.aggregate or not s.aggregate]
    results: list[tuple[Setup, list[float], int]] = []
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="bench-alert-latency-") as tmp:
        async with serve(receiver) as webhook:
            for setup in setups:
                t0 = time.monotonic()
                lat, n = await measure(setup, receiver, webhook, args.cases, rng, Path(tmp))
                results.append((setup, sorted(lat), n))
                print(
                    f"# {setup.key}: {len(lat)}/{n} alerts received "
                    f"({time.monotonic() - t0:.0f} s)",
                    file=sys.stderr,
                )

    print(
        f"machine: {platform.machine()} python {platform.python_version()}, "
        f"{os.cpu_count()} cores; revopipe in a separate process, loopback; "
        f"{args.cases} cases per configuration, 50-300 ms apart"
    )
    print("\n| configuration | received | p50 (s) | p90 (s) | p99 (s) | max (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for setup, lat, n in results:
        if not lat:
            print(f"| {setup.label} | 0/{n} | - | - | - | - |")
            continue
        figures = " | ".join(f"{pct(lat, q):.3f}" for q in (50, 90, 99, 100))
        print(f"| {setup.label} | {len(lat)}/{n} | {figures} |")
    print(
        f"| Prometheus + Alertmanager defaults (computed, not measured) | - | "
        f"{PEER_TYPICAL:.0f} (typical) | - | {PEER_WORST:.0f} (worst) | {PEER_WORST:.0f} |"
    )
    print(
        f"\npeer figures computed on paper from documented defaults: scrape_interval "
        f"{PROM_SCRAPE:.0f}s + evaluation_interval {PROM_EVAL:.0f}s + group_wait "
        f"{AM_GROUP_WAIT:.0f}s -> typical {PROM_SCRAPE / 2:.0f} + {PROM_EVAL / 2:.0f} + "
        f"{AM_GROUP_WAIT:.0f} = {PEER_TYPICAL:.0f} s, worst {PEER_WORST:.0f} s "
        "(notifier and HTTP time ignored)"
    )
    for setup, lat, _ in results:
        if lat:
            p50, p99 = pct(lat, 50), pct(lat, 99)
            print(
                f"ratio {setup.key}: p50 / {PEER_TYPICAL:.0f} s = {p50 / PEER_TYPICAL:.4f} "
                f"({PEER_TYPICAL / p50:.0f}x sooner); p99 / {PEER_WORST:.0f} s = "
                f"{p99 / PEER_WORST:.4f} ({PEER_WORST / p99:.0f}x sooner)"
            )
    if any(len(lat) < n for _, lat, n in results):
        sys.exit("some alerts never arrived: see the table")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cases", type=int, default=None, help="samples per configuration")
    ap.add_argument("--quick", action="store_true", help="30 cases per configuration")
    ap.add_argument(
        "--no-aggregate",
        dest="aggregate",
        action="store_false",
        help="skip the configuration behind `aggregate`",
    )
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    if args.cases is None:
        args.cases = 30 if args.quick else 200
    try:
        asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # the revopipe child and the temp dir are already cleaned up by now
        sys.exit("interrupted")


if __name__ == "__main__":
    main()
