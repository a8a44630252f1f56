"""Alert rule evaluation cost: 10 000 series x 50 rules per pass, revopipe's `alerts` rules
(`Snapshot.update` + `evaluate` per rule) next to a real Prometheus evaluating 50
equivalent PromQL rules over the same 10 000 series, scraped from a local endpoint.

    python benches/bench_alert_eval.py [--passes 20] [--prom-seconds 40] [--quick]

Target (issue #5): 10 000 series x 50 rules every window on one core without falling
behind (a 10 s window leaves 10 s per pass).

The series are what `aggregate` emits for a fleet (host CPU/memory/filesystem/process
gauges, HTTP duration histogram statistics per service/route/method/status class,
revopipe's own component counters, queue depths); Prometheus gets them as gauges with
the same values, dots turned into underscores (`http.server.request.duration.p99` ->
`http_server_request_duration_p99`), so both sides compare thresholds on identical
numbers. The rules mix value/rate/pNN thresholds, regex and negative matchers,
`by`-aggregations, error ratios and set operators; most selectors are distinct (the
worst case for revopipe's shared-selector memo). Prometheus' figure is its own
`prometheus_rule_group_last_duration_seconds` for the one group holding all 50 rules.
Everything runs on loopback, in a temporary directory removed at the end, and stops by
itself (Prometheus is killed after `--prom-seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiohttp import web

from revopipe.batch import MetricBatch, MetricBatchBuilder
from revopipe.events import Tags, make_tags
from revopipe_plugins.alerts.rule import RuleConfig
from revopipe_plugins.alerts.rules import Snapshot, evaluate

S = 1_000_000_000
HTTP = "http.server.request.duration"
CPU_TOTAL = 'system.cpu.utilization{cpu.logical_number="", cpu.mode=""}'
P_CPU_TOTAL = 'system_cpu_utilization_last{cpu_logical_number="", cpu_mode=""}'


# --- the series -----------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    hosts: int
    services: int
    routes: int
    queues: int


FULL = Shape(hosts=100, services=10, routes=15, queues=200)  # exactly 10 000 series
QUICK = Shape(hosts=10, services=4, routes=5, queues=20)


def series(shape: Shape, seed: int = 7) -> list[tuple[str, Tags, float]]:
    """(aggregate's output name, tags, value) for one window."""
    rng = random.Random(seed)
    out: list[tuple[str, Tags, float]] = []

    def add(name: str, tags: dict[str, str], value: float) -> None:
        out.append((name, make_tags(tags), value))

    for h in range(shape.hosts):
        host = {"host.name": f"h{h:03d}"}
        add("system.cpu.utilization.last", host, rng.betavariate(2, 3))
        for cpu in range(4):
            add(
                "system.cpu.utilization.last",
                {**host, "cpu.logical_number": str(cpu)},
                rng.betavariate(2, 2),
            )
        for mode in ("user", "nice", "system", "idle", "iowait", "interrupt", "softirq", "steal"):
            add("system.cpu.utilization.last", {**host, "cpu.mode": mode}, rng.random() / 4)
        add(
            "system.memory.utilization.last",
            {**host, "system.memory.state": "used"},
            rng.betavariate(5, 2),
        )
        for dev, mount in (("sda1", "/"), ("sda2", "/var"), ("sdb1", "/data")):
            add(
                "system.filesystem.utilization.last",
                {**host, "system.device": dev, "system.filesystem.mountpoint": mount},
                rng.betavariate(4, 2),
            )
        for proc in ("nginx", "postgres", "redis", "python"):
            add(
                "process.running.last",
                {**host, "process.executable.name": proc},
                0.0 if rng.random() < 0.02 else 1.0,
            )
        for direction in ("receive", "transmit"):
            add(
                "system.network.errors.rate",
                {**host, "network.io.direction": direction},
                rng.expovariate(1.0),
            )
        for dev in ("sda", "nvme0n1"):
            add("system.disk.io_time.rate", {**host, "system.device": dev}, rng.random())
        for comp in ("ingest", "alerts"):
            c = {**host, "component": comp}
            add("revopipe.component.health.last", c, 0.5 if rng.random() < 0.05 else 1.0)
            dropped = rng.expovariate(1.0) if rng.random() < 0.05 else 0.0
            add("revopipe.component.dropped.sum", c, dropped * 10)
            add("revopipe.component.dropped.rate", c, dropped)
            errors = rng.expovariate(5.0) if rng.random() < 0.1 else 0.0
            add("revopipe.component.errors.sum", c, errors * 10)
            add("revopipe.component.errors.rate", c, errors)
    for s in range(shape.services):
        for r in range(shape.routes):
            route = f"/api/v{1 + r % 2}/r{r}"
            for method in ("GET", "POST"):
                for status, share in (("2xx", 0.9), ("4xx", 0.07), ("5xx", 0.03)):
                    tags = {
                        "service": f"svc{s}",
                        "http.route": route,
                        "http.request.method": method,
                        "http.response.status_class": status,
                    }
                    count = float(int(rng.lognormvariate(6, 1) * share) + 1)
                    p50 = rng.lognormvariate(-3, 0.7)
                    p99 = p50 * rng.lognormvariate(2, 0.6)
                    add(f"{HTTP}.count", tags, count)
                    add(f"{HTTP}.rate", tags, count / 10)
                    add(f"{HTTP}.sum", tags, count * p50 * 1.3)
                    add(f"{HTTP}.mean", tags, p50 * 1.3)
                    add(f"{HTTP}.p50", tags, p50)
                    add(f"{HTTP}.p99", tags, p99)
                    add(f"{HTTP}.max", tags, p99 * 1.5)
    for q in range(shape.queues):
        add("app.queue.depth.last", {"queue": f"q{q:03d}"}, rng.expovariate(1 / 300))
    return out


def worst_case(n: int) -> tuple[list[tuple[str, Tags, float]], list[str]]:
    """All series under one name with five labels (one per series) and 50 rules whose
    selectors are all different, half of them regexes: nothing to share between rules."""
    rng = random.Random(3)
    rows = [
        (
            "m.p99",
            make_tags(
                {
                    "pod": f"pod-{i}",
                    "service": f"svc{i % 20}",
                    "route": f"/r{i % 37}",
                    "method": "GET" if i % 2 else "POST",
                    "status_class": f"{i % 5 + 1}xx",
                }
            ),
            rng.random(),
        )
        for i in range(n)
    ]
    conds = []
    for r in range(50):
        conds.append(
            (
                f'p99(m{{pod=~"pod-{r}.*"}}) > 0.5',
                f'p99(m{{service="svc{r % 20}", route!="/r{r}"}}) > 0.5',
                f'sum by (service) (p99(m{{status_class!~"[{r % 5 + 1}]xx"}})) > 5',
                f'error_ratio(m{{route="/r{r % 37}", status_class="5xx"}}, m{{method="GET"}})'
                f" > 0.{r}",
                f'p99(m{{pod!~"pod-{r}[0-9]*", method="POST"}}) / p99(m{{route=~"/r{r % 37}"}})'
                " > 1",
            )[r % 5]
        )
    return rows, conds


def batch(rows: list[tuple[str, Tags, float]], window: int) -> MetricBatch:
    b = MetricBatchBuilder(default_ts=window * 10 * S)
    for name, tags, value in rows:
        b.add(name, value, tags=tags)
    return b.build()


def exposition(rows: list[tuple[str, Tags, float]]) -> bytes:
    """The same series as Prometheus text: dots become underscores in names and labels."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, tags, value in rows:
        metric = name.replace(".", "_")
        if metric not in seen:
            seen.add(metric)
            lines.append(f"# TYPE {metric} gauge")
        labels = ",".join(f'{k.replace(".", "_")}="{v}"' for k, v in tags)
        lines.append(f"{metric}{{{labels}}} {value!r}")
    return ("\n".join(lines) + "\n").encode()


# --- the rules: (revopipe condition, PromQL equivalent) -----------------------------------


def _p(name: str) -> str:
    return name.replace(".", "_")


def rules(shape: Shape) -> list[tuple[str, str]]:
    h = _p(HTTP)
    st = "http.response.status_class"
    keys = "service, http.route, http.request.method"
    pkeys = _p(keys)
    out: list[tuple[str, str]] = [
        (f"last({CPU_TOTAL}) > 0.80", f"{P_CPU_TOTAL} > 0.80"),
        (f"last({CPU_TOTAL}) > 0.95", f"{P_CPU_TOTAL} > 0.95"),
        (
            'max by (host.name) (last(system.cpu.utilization{cpu.logical_number!=""})) > 0.9',
            'max by (host_name) (system_cpu_utilization_last{cpu_logical_number!=""}) > 0.9',
        ),
        (
            'last(system.cpu.utilization{cpu.mode="iowait"}) > 0.2',
            'system_cpu_utilization_last{cpu_mode="iowait"} > 0.2',
        ),
        (
            'last(system.cpu.utilization{cpu.mode=~"steal|softirq"}) > 0.2',
            'system_cpu_utilization_last{cpu_mode=~"steal|softirq"} > 0.2',
        ),
        (
            'last(system.memory.utilization{system.memory.state="used"}) > 0.85',
            'system_memory_utilization_last{system_memory_state="used"} > 0.85',
        ),
        (
            'last(system.memory.utilization{system.memory.state="used"}) > 0.95',
            'system_memory_utilization_last{system_memory_state="used"} > 0.95',
        ),
        (
            "last(system.filesystem.utilization) > 0.85",
            "system_filesystem_utilization_last > 0.85",
        ),
        (
            'last(system.filesystem.utilization{system.filesystem.mountpoint=~"/data.*"}) > 0.7',
            'system_filesystem_utilization_last{system_filesystem_mountpoint=~"/data.*"} > 0.7',
        ),
        ("last(process.running) == 0", "process_running_last == 0"),
        (
            'last(process.running{process.executable.name="postgres"}) == 0',
            'process_running_last{process_executable_name="postgres"} == 0',
        ),
        ("rate(system.network.errors) > 2", "system_network_errors_rate > 2"),
        (
            'rate(system.disk.io_time{system.device=~"sd.*"}) > 0.9',
            'system_disk_io_time_rate{system_device=~"sd.*"} > 0.9',
        ),
        (
            "max by (host.name) (last(system.memory.utilization)) > 0.7"
            f" and max by (host.name) (last({CPU_TOTAL})) > 0.7",
            "max by (host_name) (system_memory_utilization_last) > 0.7"
            f" and max by (host_name) ({P_CPU_TOTAL}) > 0.7",
        ),
    ]
    # error ratios: revopipe's error_ratio, and PromQL's sums with `or ... * 0` so a group
    # without errors reads 0 as it does in revopipe
    for threshold in (0.05, 0.15):
        out.append(
            (
                f'error_ratio({HTTP}{{{st}="5xx"}}, {HTTP}) > {threshold}',
                f'(sum without ({_p(st)}) ({h}_count{{{_p(st)}="5xx"}})'
                f" or sum without ({_p(st)}) ({h}_count) * 0)"
                f" / sum without ({_p(st)}) ({h}_count) > {threshold}",
            )
        )
    out.append(
        (
            f"sum by ({keys}) (sum({HTTP})) / sum by ({keys}) (count({HTTP})) > 0.2",
            f"sum by ({pkeys}) ({h}_sum) / sum by ({pkeys}) ({h}_count) > 0.2",
        )
    )
    # one rule per service: the unshared-selector worst case
    for s in range(min(shape.services, 10)):
        out.append(
            (
                f'p99({HTTP}{{service="svc{s}", {st}="2xx"}}) > {0.3 + s / 20}',
                f'{h}_p99{{service="svc{s}", {_p(st)}="2xx"}} > {0.3 + s / 20}',
            )
        )
    for s in range(min(shape.services, 5)):
        out.append(
            (
                f'error_ratio({HTTP}{{service="svc{s}", {st}="5xx"}},'
                f' {HTTP}{{service="svc{s}"}}) > 0.04',
                f'(sum without (service, {_p(st)}) ({h}_count{{service="svc{s}", {_p(st)}="5xx"}})'
                f' or sum without (service, {_p(st)}) ({h}_count{{service="svc{s}"}}) * 0)'
                f' / sum without (service, {_p(st)}) ({h}_count{{service="svc{s}"}}) > 0.04',
            )
        )
    for i, (pattern, method, threshold) in enumerate(
        (
            ("/api/v1/.*", "POST", 1.0),
            ("/api/v2/.*", "GET", 0.8),
            ("/api/v./r1.*", "GET", 0.6),
            (".*/r[0-4]", "POST", 0.9),
            ("/api/v2/r(3|5|7)", "GET", 0.4),
        )
    ):
        stat = ("p99", "p50", "max", "p99", "mean")[i]
        out.append(
            (
                f'{stat}({HTTP}{{http.route=~"{pattern}", http.request.method="{method}"}})'
                f" > {threshold}",
                f'{h}_{stat}{{http_route=~"{pattern}", http_request_method="{method}"}}'
                f" > {threshold}",
            )
        )
    out += [
        (f"sum by (service) (rate({HTTP})) > 500", f"sum by (service) ({h}_rate) > 500"),
        (f"sum by (service) (rate({HTTP})) < 1", f"sum by (service) ({h}_rate) < 1"),
        (f'rate({HTTP}{{{st}="4xx"}}) > 5', f'{h}_rate{{{_p(st)}="4xx"}} > 5'),
        (
            f'sum by (service) (rate({HTTP}{{{st}="5xx"}})) > 20',
            f'sum by (service) ({h}_rate{{{_p(st)}="5xx"}}) > 20',
        ),
        (f'max({HTTP}{{{st}!="2xx"}}) > 5', f'{h}_max{{{_p(st)}!="2xx"}} > 5'),
        (
            f'mean({HTTP}{{http.request.method="GET"}}) > 0.3',
            f'{h}_mean{{http_request_method="GET"}} > 0.3',
        ),
        (f"p99({HTTP}) / p50({HTTP}) > 40", f"{h}_p99 / {h}_p50 > 40"),
        (
            f"avg by (service) (p99({HTTP})) > 0.8 unless sum by (service) (rate({HTTP})) < 1",
            f"avg by (service) ({h}_p99) > 0.8 unless sum by (service) ({h}_rate) < 1",
        ),
        (f'p99({HTTP}{{service!~"svc[0-2]"}}) > 2', f'{h}_p99{{service!~"svc[0-2]"}} > 2'),
        ("last(revopipe.component.health) < 1", "revopipe_component_health_last < 1"),
        ("rate(revopipe.component.dropped) > 0", "revopipe_component_dropped_rate > 0"),
        ("rate(revopipe.component.errors) > 0.1", "revopipe_component_errors_rate > 0.1"),
        (
            'sum(revopipe.component.errors{component="ingest"}) > 5',
            'revopipe_component_errors_sum{component="ingest"} > 5',
        ),
        ("last(app.queue.depth) > 1000", "app_queue_depth_last > 1000"),
        (
            'max by () (last(app.queue.depth{queue=~"q1.*"})) > 900',
            'max by () (app_queue_depth_last{queue=~"q1.*"}) > 900',
        ),
    ]
    while len(out) < 50:  # the quick shape has fewer services: top up with host rules
        i = len(out)
        out.append(
            (
                f'last(system.filesystem.utilization{{system.device="sda{i % 3}"}}) > 0.{i}',
                f'system_filesystem_utilization_last{{system_device="sda{i % 3}"}} > 0.{i}',
            )
        )
    return out[:50]


# --- revopipe -------------------------------------------------------------------------


@dataclass
class Ours:
    pass_s: float
    update_s: float
    firing: int


def run_revopipe(rows: list[tuple[str, Tags, float]], conditions: list[str], passes: int) -> Ours:
    compiled = [
        RuleConfig.model_validate({"name": f"r{i}", "expr": c}).condition
        for i, c in enumerate(conditions)
    ]
    snap = Snapshot()
    evals: list[float] = []
    updates: list[float] = []
    firing = 0
    for window in range(passes + 1):
        b = batch(rows, window)
        t0 = time.perf_counter()
        snap.update(b)
        t1 = time.perf_counter()
        firing = sum(len(evaluate(c, snap)) for c in compiled)
        t2 = time.perf_counter()
        snap.expire((window - 1) * 10 * S)
        if window:  # the first pass also builds the index: a warm-up
            updates.append(t1 - t0)
            evals.append(t2 - t1)
    return Ours(statistics.median(evals), statistics.median(updates), firing)


# --- Prometheus -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)", re.MULTILINE)


def _prom_values(text: str, name: str) -> dict[str, float]:
    return {
        labels or "": float(value)
        for metric, labels, value in _SAMPLE.findall(text)
        if metric == name
    }


@dataclass
class Peer:
    pass_s: float
    samples: int
    firing: int
    version: str


async def run_prometheus(
    rows: list[tuple[str, Tags, float]], promql: list[str], seconds: float
) -> Peer:
    body = exposition(rows)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    target_port = runner.addresses[0][1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-alert-eval-"))
    prom_port = _free_port()
    rule_lines = ["groups:", "  - name: bench", "    interval: 1s", "    rules:"]
    for i, q in enumerate(promql):
        rule_lines += [f"      - alert: r{i}", f"        expr: '{q}'"]
    (tmp / "rules.yml").write_text("\n".join(rule_lines) + "\n")
    (tmp / "prometheus.yml").write_text(
        # scraping 10 000 series every 5 s (not 1 s) leaves the rule engine the CPU
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 1s\n"
        "rule_files: [rules.yml]\n"
        "scrape_configs:\n  - job_name: fleet\n    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    durations: list[float] = []
    firing = 0
    samples = 0
    version = ""
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}") as client:
            deadline = time.monotonic() + seconds
            last_eval = 0.0
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"prometheus exited: {err[-2000:]}")
                try:
                    text = (await client.get("/metrics")).text
                except httpx.TransportError:
                    continue
                if not version:
                    m = re.search(r'prometheus_build_info\{[^}]*version="([^"]+)"', text)
                    version = m.group(1) if m else "?"
                last = _prom_values(text, "prometheus_rule_group_last_evaluation_timestamp_seconds")
                dur = _prom_values(text, "prometheus_rule_group_last_duration_seconds")
                scraped = _prom_values(text, "prometheus_tsdb_head_series")
                samples = int(next(iter(scraped.values()), 0))
                stamp = next(iter(last.values()), 0.0)
                # count each evaluation once, and only once the scrape has filled the head
                if stamp > last_eval and dur and samples >= len(rows):
                    last_eval = stamp
                    durations.append(next(iter(dur.values())))
            alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
            firing = len(alerts)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    if len(durations) < 3:
        raise RuntimeError(f"prometheus evaluated the group only {len(durations)} times")
    # the first evaluations run while the head is still filling: keep the later half
    return Peer(statistics.median(durations[len(durations) // 2 :]), samples, firing, version)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=20, help="revopipe passes (median)")
    ap.add_argument("--prom-seconds", type=float, default=40.0, help="how long Prometheus runs")
    ap.add_argument("--quick", action="store_true", help="~900 series, short runs")
    ap.add_argument("--no-peer", action="store_true", help="revopipe only")
    args = ap.parse_args()
    shape = QUICK if args.quick else FULL
    passes = 3 if args.quick else args.passes
    prom_seconds = 12.0 if args.quick else args.prom_seconds
    rows = series(shape)
    pairs = rules(shape)
    ours = run_revopipe(rows, [a for a, _ in pairs], passes)
    n = len(rows) * len(pairs)
    print(
        f"machine: {platform.machine()} python {platform.python_version()}, "
        f"{os.cpu_count()} cores; {len(rows):,} series x {len(pairs)} rules per pass"
    )
    print("| evaluator | pass (ms) | series x rules / s | label sets firing |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| revopipe 50 x `evaluate` | {ours.pass_s * 1e3:.1f} | {n / ours.pass_s:,.0f} "
        f"| {ours.firing} |"
    )
    with_update = ours.pass_s + ours.update_s
    print(
        f"| revopipe `Snapshot.update` ({len(rows):,} rows) + 50 x `evaluate` "
        f"| {with_update * 1e3:.1f} | {n / with_update:,.0f} | {ours.firing} |"
    )
    worst_rows, worst_rules = worst_case(len(rows))
    worst = run_revopipe(worst_rows, worst_rules, passes)
    print(
        f"| revopipe, worst case: {len(worst_rows):,} series of one name, 50 distinct "
        f"selectors (regexes) | {worst.pass_s * 1e3:.1f} | {n / worst.pass_s:,.0f} "
        f"| {worst.firing} |"
    )
    if args.no_peer:
        return
    peer = asyncio.run(run_prometheus(rows, [b for _, b in pairs], prom_seconds))
    print(
        f"| Prometheus {peer.version} rule group ({peer.samples:,} head series) "
        f"| {peer.pass_s * 1e3:.1f} | {n / peer.pass_s:,.0f} | {peer.firing} alerts |"
    )
    print(
        f"\nratio revopipe / Prometheus (series x rules per second): "
        f"{peer.pass_s / ours.pass_s:.1f}x (evaluation alone), "
        f"{peer.pass_s / with_update:.1f}x (with revopipe's snapshot update)"
    )
    budget = 10.0
    print(f"one 10 s window holds {budget / with_update:,.0f} such passes (target: 1 on one core)")


if __name__ == "__main__":
    main()
