"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright):

    python benches/bench_dashboard.py [--quick] [--pushes 60] [--series 100] [--days 7]
                                      [--cpu-seconds 30] [--tabs 5] [--only a,b,c]

(a) Freshness: time from a value entering the pipeline (the POST to its `http` source,
    answered once the batch went downstream) to that value on screen, p50/p99. A
    MutationObserver in the page stamps the moment the system widget's text first shows
    it, on the same host clock as the send. Values are pushed at random 0.2-1.2 s gaps so
    they land at every phase of the dashboard's `refresh` tick.
    Peer: Grafana is not available offline; what a Grafana panel does is poll the
    Prometheus query API. So the same pushes are watched through a real Prometheus
    (`/usr/bin/prometheus`) scraping the pipeline's `prometheus` sink every 1 s, its
    `/api/v1/query` polled every 1 s (Grafana's minimum refresh is 5 s by default, so 1 s
    is the peer's best case). The ratio is peer / revopipe.
(b) Page load with a week of history: 7 days of 10 s points for 100 series
    (`system.cpu.utilization{cpu=0..99}`, what the trends widget shows by default) are
    written into a `sqlite` sink's database through its writer (`HistoryStore`, rollup
    tiers 10s/1m/1h), then a pipeline serving that history is started and we time, in
    the browser, the page load until all seven widgets are drawn and the trends widget's
    switch to the 7d range until its chart is drawn; plus the JSON API call alone.
(c) CPU of the pipeline process (psutil, user+system, % of one core) over `--cpu-seconds`
    with 0 and then `--tabs` open tabs, a `system` source at 1 s keeping widgets moving.

revopipe runs as its own process (`python -m revopipe run`), so its CPU is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402

WIDGETS = ("system", "api", "errors", "health", "alerts", "trends", "recommendations")
NS = 1_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


@contextlib.contextmanager
def revopipe(config: dict[str, Any], workdir: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    path = workdir / f"{name}.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "revopipe", "run", str(path), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}; see its log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def dashboard_sink(port: int, **extra: Any) -> dict[str, Any]:
    return {"type": "dashboard", "listen": f"127.0.0.1:{port}", **extra}


# -- (a) freshness ---------------------------------------------------------------------


OBSERVER_JS = """
() => {
  window.__seen = {};
  window.__want = new Set();
  const el = document.querySelector('[data-widget="system"]');
  const check = () => {
    const text = el.innerText;
    for (const w of window.__want) {
      if (text.includes(w)) { window.__seen[w] = Date.now(); window.__want.delete(w); }
    }
  };
  new MutationObserver(check).observe(el, {subtree: true, childList: true, characterData: true});
}
"""


class PromPoller(threading.Thread):
    """Polls Prometheus's query API every `interval`, noting when each value first shows."""

    def __init__(self, api: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.interval = interval
        self.first_seen: dict[float, float] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop_flag.is_set():
                started = time.monotonic()
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, IndexError):
                    r = client.get(
                        self.api + "/api/v1/query",
                        params={"query": '{__name__=~"bench_probe.*"}'},
                    )
                    now = time.time()
                    for res in r.json()["data"]["result"]:
                        v = round(float(res["value"][1]), 6)
                        self.first_seen.setdefault(v, now)
                self.stop_flag.wait(max(0.0, self.interval - (time.monotonic() - started)))


@contextlib.contextmanager
def prometheus(workdir: Path, target_port: int, scrape: float) -> Iterator[str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = free_port()
    cfg = workdir / "prometheus.yml"
    cfg.write_text(
        f"global:\n  scrape_interval: {round(scrape * 1000)}ms\n"
        f"  evaluation_interval: {round(scrape * 1000)}ms\n"
        f"scrape_configs:\n  - job_name: revopipe\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={workdir / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        wait_http(api + "/-/ready", proc)
        yield api
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def bench_freshness(args: argparse.Namespace, workdir: Path, p: Any) -> dict[str, Any]:
    dash_port, ingest_port, prom_port = free_port(), free_port(), free_port()
    config = {
        "pipeline": {"name": "bench-dashboard-a", "data_dir": str(workdir / "a")},
        "sources": {"ingest": {"type": "http", "address": f"127.0.0.1:{ingest_port}"}},
        "sinks": {
            "dash": dashboard_sink(dash_port, inputs=["ingest"], refresh=args.refresh),
            "prom": {
                "type": "prometheus",
                "inputs": ["ingest"],
                "listen": f"127.0.0.1:{prom_port}",
            },
        },
    }
    ingest = f"http://127.0.0.1:{ingest_port}/ingest"
    rng = random.Random(1)
    ours: list[float] = []
    peer: list[float] = []
    missed_peer = 0
    with (
        revopipe(config, workdir, "a") as proc,
        prometheus(workdir, prom_port, args.scrape) as prom_api,
        httpx.Client(timeout=10) as client,
    ):
        wait_http(f"http://127.0.0.1:{dash_port}/healthz", proc)
        poller = PromPoller(prom_api, args.poll)
        poller.start()
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"http://127.0.0.1:{dash_port}/")
        page.wait_for_selector('[data-widget="system"]', state="visible")
        page.evaluate(OBSERVER_JS)
        for i in range(args.pushes):
            # Distinct on screen and in Prometheus, never equal to the previous value, and
            # with a non-zero decimal: the page drops trailing zeros ("12 %").
            pct_value = round(10 + i % 80 + 0.1 * (1 + i % 9), 1)
            value = round(pct_value / 100, 6)
            shown = f"{pct_value:.1f}"
            page.evaluate("w => window.__want.add(w)", shown)
            body = (
                json.dumps({"name": "system.cpu.utilization", "value": value, "unit": "1"})
                + "\n"
                + json.dumps({"name": "bench.probe", "value": value})
                + "\n"
            )
            sent = time.time()
            client.post(ingest, content=body, headers={"Content-Type": "application/x-ndjson"})
            page.wait_for_function("w => w in window.__seen", arg=shown, timeout=30_000)
            ours.append(page.evaluate("w => window.__seen[w]", shown) / 1000 - sent)
            # Let the peer see it before the next value replaces it (else it never would).
            deadline = time.monotonic() + 4 * (args.scrape + args.poll) + 2
            while value not in poller.first_seen and time.monotonic() < deadline:
                time.sleep(0.02)
            if value in poller.first_seen:
                peer.append(poller.first_seen[value] - sent)
            else:
                missed_peer += 1
            time.sleep(rng.uniform(0.2, 1.2))
        poller.stop_flag.set()
        browser.close()
    return {"ours": ours, "peer": peer, "missed_peer": missed_peer}


# -- (b) page load with a week of history ---------------------------------------------

FIRST_DRAWN_JS = """
window.__drawn = {};
new MutationObserver(records => {
  for (const r of records) {
    const w = r.target.dataset && r.target.dataset.widget;
    if (w && !(w in window.__drawn) && Number(r.target.dataset.updated || 0) > 0) {
      window.__drawn[w] = performance.now() / 1000;
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-updated"]});
"""


def make_history(path: Path, series: int, days: float) -> float:
    """Write `days` of 10 s points for `series` series; returns seconds taken."""
    from revopipe.batch import Batch, MetricBatchBuilder
    from revopipe.events import make_tags
    from revopipe_plugins.sqlite.config import Tier
    from revopipe_plugins.sqlite.store import HistoryStore

    keep = round((days + 2) * 86400 * NS)
    store = HistoryStore(
        path,
        [Tier(10 * NS, keep), Tier(60 * NS, keep), Tier(3600 * NS, 90 * 86400 * NS)],
        raw_retention_ns=keep,
        events_retention_ns=keep,
    )
    tags = [make_tags({"cpu": str(i)}) for i in range(series)]
    steps = int(days * 8640)
    end = time.time_ns() // (10 * NS) * (10 * NS)
    start = end - steps * 10 * NS
    rng = random.Random(7)
    level = [rng.uniform(0.1, 0.6) for _ in range(series)]
    began = time.monotonic()
    chunk = max(1, 20_000 // series)
    for s0 in range(0, steps, chunk):
        b = MetricBatchBuilder(0)
        for k in range(s0, min(steps, s0 + chunk)):
            ts = start + k * 10 * NS
            for i in range(series):
                level[i] = min(1.0, max(0.0, level[i] + rng.gauss(0, 0.01)))
                b.add("system.cpu.utilization", level[i], tags=tags[i], timestamp=ts)
        store.write(Batch(b.build()))
    store.close()
    return time.monotonic() - began


def all_drawn(page: Any) -> None:
    """Wait until every widget has been drawn with data at least once."""
    for wid in WIDGETS:
        page.wait_for_function(
            'w => { const el = document.querySelector(`[data-widget="${w}"]`);'
            " return el && Number(el.dataset.updated || 0) > 0; }",
            arg=wid,
            timeout=60_000,
        )


def bench_page_load(args: argparse.Namespace, workdir: Path, p: Any) -> dict[str, Any]:
    data_dir = workdir / "b"
    data_dir.mkdir(exist_ok=True)
    cache = Path(tempfile.gettempdir()) / f"revopipe-bench-history-{args.series}x{args.days:g}d.db"
    # A cached database older than an hour has left the 7d window's end behind; remake it.
    if not cache.exists() or time.time() - cache.stat().st_mtime > 3600:
        for suffix in ("", "-wal", "-shm"):
            Path(str(cache) + suffix).unlink(missing_ok=True)
        print(f"(b) writing {args.days:g} days x {args.series} series of 10 s points ...")
        took = make_history(cache, args.series, args.days)
        print(f"(b) wrote {int(args.days * 8640) * args.series:,} points in {took:.0f} s")
    shutil.copy(cache, data_dir / "history.db")
    keep = f"{int(args.days) + 2}d"
    dash_port = free_port()
    config = {
        "pipeline": {"name": "bench-dashboard-b", "data_dir": str(data_dir)},
        "sources": {"self": {"type": "internal", "interval": "10s"}},
        "sinks": {
            "history": {
                "type": "sqlite",
                "inputs": ["self"],
                "rollups": ["10s", "1m", "1h"],
                "raw_retention": keep,
                "rollup_retention": {"10s": keep, "1m": keep, "1h": "90d"},
                "events_retention": keep,
                "max_size": "8GiB",
            },
            "dash": dashboard_sink(dash_port, inputs=["self"], history="history"),
        },
    }
    url = f"http://127.0.0.1:{dash_port}"
    loads: list[float] = []
    load_events: list[float] = []
    warm: list[float] = []
    slowest: list[tuple[str, float]] = []
    switches: list[float] = []
    api_calls: list[float] = []
    points = nseries = 0
    with revopipe(config, workdir, "b") as proc:
        wait_http(url + "/healthz", proc)
        with httpx.Client(timeout=60) as client:
            for _ in range(args.repeat):
                t = time.monotonic()
                r = client.get(url + "/api/widgets/trends", params={"range": "7d"})
                api_calls.append(time.monotonic() - t)
                r.raise_for_status()
                data = r.json().get("data", {})
                points = sum(len(s["y"]) for s in data.get("series", []))
                nseries = len(data.get("series", []))
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        for _ in range(args.repeat):
            ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
            ctx.add_init_script(FIRST_DRAWN_JS)
            page = ctx.new_page()
            t = time.monotonic()
            page.goto(url + "/")
            all_drawn(page)
            loads.append(time.monotonic() - t)
            marks = page.evaluate(
                "() => ({drawn: window.__drawn, load: performance.getEntriesByType("
                "'navigation')[0].loadEventEnd})"
            )
            load_events.append(marks["load"] / 1000)
            slowest.append(max(marks["drawn"].items(), key=lambda kv: kv[1]))
            trends = page.locator('[data-widget="trends"]')
            before = int(trends.get_attribute("data-updated") or 0)
            t = time.monotonic()
            trends.get_by_role("button", name="7d").click()
            page.wait_for_function(
                "n => { const el = document.querySelector('[data-widget=\"trends\"]');"
                " return Number(el.dataset.updated || 0) > n &&"
                " el.querySelectorAll('.main-svg .scatterlayer .trace').length > 0; }",
                arg=before,
                timeout=60_000,
            )
            switches.append(time.monotonic() - t)
            # Again in the same tab: plotly.js (4.6 MB) now comes from the browser's cache.
            t = time.monotonic()
            page.reload()
            all_drawn(page)
            warm.append(time.monotonic() - t)
            ctx.close()
        art = REPO / "artifacts"
        art.mkdir(exist_ok=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url + "/")
        page.locator('[data-widget="trends"]').get_by_role("button", name="7d").click()
        page.wait_for_timeout(3000)
        shot = art / "dashboard-bench-7d.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"(b) screenshot: {shot}")
        browser.close()
    return {
        "loads": loads,
        "load_events": load_events,
        "warm": warm,
        "slowest": slowest,
        "switches": switches,
        "api": api_calls,
        "points": points,
        "series": nseries,
    }


# -- (c) CPU with open tabs -----------------------------------------------------------


def bench_cpu(args: argparse.Namespace, workdir: Path, p: Any) -> dict[str, float]:
    dash_port = free_port()
    config = {
        "pipeline": {"name": "bench-dashboard-c", "data_dir": str(workdir / "c")},
        "sources": {
            "host": {"type": "system", "interval": "1s"},
            "self": {"type": "internal", "interval": "1s"},
        },
        "sinks": {"dash": dashboard_sink(dash_port, inputs=["host", "self"])},
    }
    url = f"http://127.0.0.1:{dash_port}/"
    out: dict[str, float] = {}
    with revopipe(config, workdir, "c") as proc:
        wait_http(url + "healthz", proc)
        ps = psutil.Process(proc.pid)
        time.sleep(3)  # past start-up

        def measure() -> float:
            c0 = ps.cpu_times()
            t0 = time.monotonic()
            time.sleep(args.cpu_seconds)
            c1 = ps.cpu_times()
            return 100 * ((c1.user - c0.user) + (c1.system - c0.system)) / (time.monotonic() - t0)

        out["0"] = measure()
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        pages = []
        for _ in range(args.tabs):
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            page.wait_for_selector('[data-widget="system"]', state="visible")
            pages.append(page)
        time.sleep(3)
        out[str(args.tabs)] = measure()
        # Every tab must still be live at the end, or the figure measures nothing.
        for page in pages:
            page.wait_for_function(
                "() => Number(document.querySelector('[data-widget=\"system\"]')"
                ".dataset.updated || 0) > 2",
                timeout=30_000,
            )
        browser.close()
    return out


# -- main ------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    ap.add_argument("--pushes", type=int, default=60)
    ap.add_argument("--refresh", default="1s", help="the dashboard's refresh (its default)")
    ap.add_argument("--scrape", type=float, default=1.0, help="Prometheus scrape interval, s")
    ap.add_argument("--poll", type=float, default=1.0, help="query API poll interval, s")
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cpu-seconds", type=float, default=30.0)
    ap.add_argument("--tabs", type=int, default=5)
    ap.add_argument("--only", default="a,b,c", help="which parts, e.g. 'a' or 'b,c'")
    args = ap.parse_args()
    if args.quick:
        args.pushes, args.days, args.repeat, args.cpu_seconds = 15, 1.0, 2, 10.0
    if chromium_path() is None:
        sys.exit("bench_dashboard: no system Chromium; apt-get install chromium")
    from playwright.sync_api import sync_playwright

    parts = set(args.only.split(","))
    print(
        f"bench_dashboard on {platform.node()} ({os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()})"
    )
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp, sync_playwright() as p:
        workdir = Path(tmp)
        rows: list[tuple[str, str, str]] = []
        if "a" in parts:
            a = bench_freshness(args, workdir, p)
            ours, peer = a["ours"], a["peer"]
            o50, o99 = pct(ours, 50), pct(ours, 99)
            rows.append(
                (
                    f"(a) event -> browser, revopipe SSE (refresh {args.refresh})",
                    f"p50 {o50 * 1e3:.0f} ms, p99 {o99 * 1e3:.0f} ms",
                    f"n={len(ours)}",
                )
            )
            if not peer:
                rows.append(("(a) peer", "no value seen", f"missed {a['missed_peer']}"))
            else:
                p50, p99 = pct(peer, 50), pct(peer, 99)
                rows.append(
                    (
                        f"(a) peer: Prometheus scrape {args.scrape:g}s + query API poll "
                        f"{args.poll:g}s",
                        f"p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms",
                        f"n={len(peer)}, missed {a['missed_peer']}",
                    )
                )
                rows.append(
                    (
                        "(a) freshness ratio peer / revopipe",
                        f"p50 {p50 / o50:.1f}x, p99 {p99 / o99:.1f}x",
                        "higher = revopipe fresher",
                    )
                )
        if "b" in parts:
            b = bench_page_load(args, workdir, p)
            rows.append(
                (
                    f"(b) page load, all 7 widgets drawn ({args.days:g} d x {args.series} "
                    "series of 10 s points in history)",
                    f"median {statistics.median(b['loads']) * 1e3:.0f} ms, "
                    f"max {max(b['loads']) * 1e3:.0f} ms",
                    f"n={len(b['loads'])}; load event median "
                    f"{statistics.median(b['load_events']) * 1e3:.0f} ms; last drawn: "
                    + ", ".join(f"{w} {t * 1e3:.0f} ms" for w, t in b["slowest"]),
                )
            )
            rows.append(
                (
                    "(b) page reload in the same tab (plotly.js cached), all 7 drawn",
                    f"median {statistics.median(b['warm']) * 1e3:.0f} ms, "
                    f"max {max(b['warm']) * 1e3:.0f} ms",
                    f"n={len(b['warm'])}",
                )
            )
            rows.append(
                (
                    "(b) trends range -> 7d, chart drawn",
                    f"median {statistics.median(b['switches']) * 1e3:.0f} ms, "
                    f"max {max(b['switches']) * 1e3:.0f} ms",
                    f"{b['series']} series, {b['points']} points (1h rollups)",
                )
            )
            rows.append(
                (
                    "(b) GET /api/widgets/trends?range=7d",
                    f"median {statistics.median(b['api']) * 1e3:.0f} ms",
                    f"n={len(b['api'])}",
                )
            )
        if "c" in parts:
            c = bench_cpu(args, workdir, p)
            zero, many = c["0"], c[str(args.tabs)]
            rows.append(
                (
                    f"(c) pipeline CPU, system+internal at 1 s, over {args.cpu_seconds:g} s",
                    f"0 tabs {zero:.1f} %, {args.tabs} tabs {many:.1f} %",
                    f"+{(many - zero) / args.tabs:.2f} % of a core per tab",
                )
            )
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'what':<{width}}  {'result':<34}  note")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<34}  {r[2]}")


if __name__ == "__main__":
    main()
