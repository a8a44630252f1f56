"""CPU cost of revopipe's `system` source next to prometheus node_exporter, side by side.

In one run this starts

* a revopipe pipeline (public API: `revopipe.Pipeline.from_dict`) with a `system` source
  collecting every `--interval` into a `blackhole` sink, in its own process;
* `prometheus-node-exporter` on a free loopback port, scraped every `--interval` by this
  script, as Prometheus would;
* (unless `--no-baseline`) the same pipeline with a `generate` source sending one metric
  per interval instead of `system`: what the interpreter and runtime cost on their own;

waits `--warmup` seconds, then measures the CPU time (user + system) each process uses
over `--seconds`, and prints a markdown table for benches/RESULTS.md. The scraper's own
CPU (this script) is measured separately and not counted against node_exporter.

    python benches/bench_system_cpu.py --seconds 60

Needs revopipe installed (`pip install -e . --no-build-isolation`) and node_exporter
(`apt-get install prometheus-node-exporter`). Both children are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"

PIPELINE_SCRIPT = """
import json, sys
import anyio
import revopipe

pipeline = revopipe.Pipeline.from_dict(json.loads(sys.argv[1]))
print("ready", flush=True)
anyio.run(pipeline.run)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return len(resp.read())


@dataclass
class Usage:
    cpu_s: float
    collections: int
    rss_mib: float

    def per_minute(self, window: float) -> float:
        return self.cpu_s / window * 60.0

    def ms_per_collection(self) -> float:
        return self.cpu_s / self.collections * 1000.0 if self.collections else float("nan")


def start_revopipe(data_dir: Path, source: dict[str, object], log: Path) -> subprocess.Popen[bytes]:
    config = {
        "pipeline": {"name": "bench-system", "data_dir": str(data_dir)},
        "sources": {"host": source},
        "sinks": {"null": {"type": "blackhole", "inputs": ["host"]}},
    }
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", PIPELINE_SCRIPT, json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the pipeline is built (or it died)
    if line.strip() != b"ready":
        stop(proc)
        raise SystemExit(f"revopipe pipeline failed to start:\n{log.read_text()}")
    return proc


def start_node_exporter(port: int, log: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("prometheus-node-exporter") or NODE_EXPORTER
    if not Path(binary).exists():
        raise SystemExit("node_exporter not found: apt-get install prometheus-node-exporter")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 15
    while True:
        try:
            scrape(url)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise SystemExit(f"node_exporter did not come up:\n{log.read_text()}") from None
            time.sleep(0.1)


def node_exporter_version() -> str:
    binary = shutil.which("prometheus-node-exporter") or NODE_EXPORTER
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    return first.split("version", 1)[-1].split()[0] if "version" in first else "?"


def measure(args: argparse.Namespace) -> None:
    interval: float = args.interval
    tmp = Path(tempfile.mkdtemp(prefix="bench-system-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    every = f"{interval}s"
    rp = start_revopipe(
        tmp / "data",
        {"type": "system", "interval": every, "processes": args.processes},
        tmp / "revopipe.log",
    )
    ne: subprocess.Popen[bytes] | None = None
    bl: subprocess.Popen[bytes] | None = None
    try:
        if args.baseline:
            bl = start_revopipe(
                tmp / "data-baseline",
                {"type": "generate", "interval": every, "batch_size": 1},
                tmp / "baseline.log",
            )
        ne = start_node_exporter(port, tmp / "node_exporter.log")
        print(
            f"revopipe pid {rp.pid}, node_exporter pid {ne.pid} on 127.0.0.1:{port}; "
            f"warm-up {args.warmup:g}s, measuring {args.seconds:g}s",
            file=sys.stderr,
        )

        start = time.monotonic()
        measure_at = start + args.warmup
        end = measure_at + args.seconds
        next_scrape = start
        scrapes = 0
        scrape_bytes = 0
        scrape_wall = 0.0
        base: tuple[float, float, float, float] | None = None
        while True:
            now = time.monotonic()
            if base is None and now >= measure_at:
                base = (
                    cpu_seconds(rp.pid),
                    cpu_seconds(ne.pid),
                    time.process_time(),
                    cpu_seconds(bl.pid) if bl else 0.0,
                )
                window_start = now
            if now >= end:
                break
            if now >= next_scrape:
                t0 = time.perf_counter()
                scrape_bytes = scrape(url)
                scrape_wall += time.perf_counter() - t0
                if base is not None:
                    scrapes += 1
                next_scrape += interval
            if rp.poll() is not None:
                raise SystemExit(f"revopipe exited early:\n{(tmp / 'revopipe.log').read_text()}")
            if ne.poll() is not None:
                raise SystemExit("node_exporter exited early")
            time.sleep(
                max(
                    0.0,
                    min(next_scrape, end, measure_at if base is None else end) - time.monotonic(),
                )
            )
        window = time.monotonic() - window_start
        assert base is not None
        revopipe = Usage(cpu_seconds(rp.pid) - base[0], round(window / interval), rss_mib(rp.pid))
        node = Usage(cpu_seconds(ne.pid) - base[1], scrapes, rss_mib(ne.pid))
        scraper = Usage(time.process_time() - base[2], scrapes, rss_mib(os.getpid()))
        baseline = (
            Usage(cpu_seconds(bl.pid) - base[3], revopipe.collections, rss_mib(bl.pid))
            if bl
            else None
        )
    finally:
        for proc in (rp, ne, bl):
            if proc is not None:
                stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    report(
        args, window, revopipe, node, scraper, baseline, scrape_bytes, scrape_wall / max(1, scrapes)
    )


def report(
    args: argparse.Namespace,
    window: float,
    revopipe: Usage,
    node: Usage,
    scraper: Usage,
    baseline: Usage | None,
    scrape_bytes: int,
    scrape_latency: float,
) -> None:
    import revopipe as rp_pkg

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    procs = f", processes={args.processes}" if args.processes else ""
    print()
    print(
        f"Host: {platform.system()} {platform.release()}, {psutil.cpu_count()} logical "
        f"CPUs{' (' + cpu_model + ')' if cpu_model else ''}, Python "
        f"{platform.python_version()}, revopipe {rp_pkg.__version__}, node_exporter "
        f"{node_exporter_version()}. Interval {args.interval:g}s, window {window:.1f}s "
        f"after {args.warmup:g}s warm-up."
    )
    print()
    print("| collector | CPU s / min | ms CPU / collection | collections | RSS MiB |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        (f"revopipe `system` source → blackhole{procs}", revopipe),
        ("prometheus-node-exporter (default collectors), scraped", node),
        ("scraper (this script; not counted)", scraper),
    ]
    if baseline is not None:
        rows.insert(1, ("revopipe baseline: `generate` 1 metric → blackhole", baseline))
    for label, u in rows:
        print(
            f"| {label} | {u.per_minute(window):.3f} | {u.ms_per_collection():.2f} | "
            f"{u.collections} | {u.rss_mib:.1f} |"
        )
    ratio = (
        revopipe.ms_per_collection() / node.ms_per_collection() if node.cpu_s > 0 else float("inf")
    )
    print()
    print(
        f"revopipe / node_exporter CPU per collection: **{ratio:.2f}x** "
        f"(node_exporter response {scrape_bytes / 1024:.0f} KiB, "
        f"{scrape_latency * 1000:.1f} ms wall per scrape)"
    )
    if baseline is not None:
        own = revopipe.ms_per_collection() - baseline.ms_per_collection()
        print(
            f"Of revopipe's figure, about {own:.2f} ms per collection is the `system` "
            "source itself; the rest is the interpreter and pipeline runtime (baseline)."
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    ap.add_argument(
        "--interval", type=float, default=1.0, help="collection / scrape interval in seconds"
    )
    ap.add_argument(
        "--processes",
        nargs="*",
        default=[],
        help="process names for the system source to track too",
    )
    ap.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the revopipe runtime baseline process",
    )
    args = ap.parse_args()
    if args.seconds <= 0 or args.interval <= 0 or args.warmup < 0:
        ap.error("--seconds and --interval must be positive, --warmup not negative")
    measure(args)


if __name__ == "__main__":
    main()
