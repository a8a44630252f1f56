"""HTTP load generation against nginx on loopback: revopipe's `LoadGenerator` side by side
with its peers in one run.

    python benches/bench_loadgen.py [--connections 64] [--duration 10] [--rate 10000]
                                    [--rate-duration 10] [--quick] [--no-pin]
                                    [--only throughput|overhead] [--locust-processes 1]
                                    [--repeat 2]

1. Max throughput (closed model, C keep-alive connections, no think time, D seconds):
   revopipe vs `wrk -t1 -cC -dD` vs Locust `FastHttpUser` (headless, all C users spawned at
   once). Target (issue #6): revopipe >= 0.9 x wrk.
2. Generator overhead at a fixed arrival rate (open model, default 10 k req/s): CPU seconds
   per 100 k requests of revopipe vs the fixed-rate tools there are: `oha -q R
   --latency-correction` (crates.io, the wrk2-style one: rate-driven, latency from the
   intended send time), `hey -q` (Debian; per-worker rate limit) and Locust
   `constant_throughput` (PyPI). wrk2, vegeta and k6 are not in Debian; a tool that is not
   installed is skipped with a note.

Fairness: nginx (`worker_processes 1`) is pinned to CPU 0 and every generator to CPU 1 with
one thread / process each (`--no-pin`: no pinning, `worker_processes auto`, generators use
all cores). Everyone fetches the same small static file over the same number of keep-alive
connections. CPU is the tool's process CPU (user + system) over its run: `wait4` rusage for
the subprocess peers (start-up included: a few ms for wrk/hey/oha, ~1 s for Locust's
imports), psutil before/after for revopipe, which runs in this process. Each tool runs
`--repeat` times (default 2, `--quick`: 1, 3 s runs), interleaved; its best run is shown
(highest req/s, lowest CPU per request) with every run's figure beside it.

Needs: `apt-get install nginx-light wrk hey`, `pip install locust`, optionally
`cargo install oha --locked`. Everything stays on 127.0.0.1, each run is bounded and all
processes and temp files are removed on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import BinaryIO

import psutil

from revopipe._core import LoadGenerator

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# a small static file: the bench measures the generator, not nginx's disk or copy path
BODY = b"<html><body>revopipe load generator benchmark</body></html>\n"
PATH = "/index.html"

LOCUSTFILE = """\
import os

from locust import FastHttpUser, constant, constant_throughput, task

RATE = float(os.environ["BENCH_USER_RATE"])


class Bench(FastHttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)

    @task
    def get(self) -> None:
        self.client.get(os.environ["BENCH_PATH"])
"""


@dataclass
class Result:
    tool: str
    settings: str
    requests: int
    errors: int
    seconds: float
    cpu_s: float
    p99_ms: float | None
    notes: list[str] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_100k(self) -> float:
        return self.cpu_s / self.requests * 100_000 if self.requests else float("nan")


@dataclass
class Ctx:
    tmp: Path
    url: str
    port: int
    pin: bool
    threads: int
    locust_processes: int
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pin_to(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def spawn(
    ctx: Ctx, cmd: Sequence[str], name: str, cpu: int | None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], BinaryIO]:
    out = open(ctx.tmp / f"{name}.out", "wb")  # noqa: SIM115 - the caller closes it
    proc = subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=pin_to(cpu),
        start_new_session=True,  # its own group: cleanup kills helpers it forked too
        cwd=ctx.tmp,
        env=env,
    )
    ctx.children.append(proc)
    return proc, out


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_tool(
    ctx: Ctx, cmd: Sequence[str], name: str, limit: float, env: dict[str, str] | None = None
) -> tuple[str, float, float]:
    """Run a peer to completion on the generator CPU; (output, CPU s from rusage, wall s)."""
    cpu = 1 if ctx.pin else None
    t0 = time.perf_counter()
    proc, out = spawn(ctx, cmd, name, cpu, env=env)
    deadline = t0 + limit
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                # a tool that hangs must not hold the bench: kill it, keep what it used
                kill_group(proc)
                pid, status, ru = os.wait4(proc.pid, 0)
                out.write(f"\n[bench] killed after {limit:.0f} s\n".encode())
                break
            time.sleep(0.05)
    finally:
        out.close()
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    ctx.children.remove(proc)
    kill_group(proc)  # stray grandchildren, if any
    text = (ctx.tmp / f"{name}.out").read_text(errors="replace")
    if proc.returncode != 0:
        print(f"  ! {name} exited {proc.returncode}; last output:\n{text[-800:]}", file=sys.stderr)
    return text, ru.ru_utime + ru.ru_stime, wall


# --- nginx ----------------------------------------------------------------------------


def nginx_conf(tmp: Path, port: int, pin: bool) -> str:
    workers = "1" if pin else "auto"
    return f"""
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
user root;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    # every peer keeps its connections for the whole run: never close them under it
    keepalive_requests 1000000000;
    open_file_cache max=16;
    open_file_cache_valid 120s;
    types {{ text/html html; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {tmp}/www;
        location / {{ }}
    }}
}}
"""


def start_nginx(ctx: Ctx) -> subprocess.Popen[bytes]:
    if not os.path.exists(NGINX):
        sys.exit("nginx not found: apt-get install nginx-light")
    (ctx.tmp / "www").mkdir()
    (ctx.tmp / "www" / PATH.lstrip("/")).write_bytes(BODY)
    conf = ctx.tmp / "nginx.conf"
    conf.write_text(nginx_conf(ctx.tmp, ctx.port, ctx.pin))
    cmd = [NGINX, "-p", str(ctx.tmp), "-c", str(conf), "-e", str(ctx.tmp / "nginx-error.log")]
    proc, out = spawn(ctx, cmd, "nginx", 0 if ctx.pin else None)
    out.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=1)
            c.request("GET", PATH)
            r = c.getresponse()
            ok = r.status == 200 and r.read() == BODY
            c.close()
            if ok:
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (ctx.tmp / "nginx-error.log").read_text(errors="replace")
            sys.exit(f"nginx did not start on 127.0.0.1:{ctx.port}:\n{log[-2000:]}")
        time.sleep(0.05)


def stop_nginx(proc: subprocess.Popen[bytes]) -> None:
    kill_group(proc, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.wait()


# --- revopipe ---------------------------------------------------------------------------


def revopipe(ctx: Ctx, model: str, target: float, seconds: float, conns: int) -> Result:
    gen = LoadGenerator(
        [("GET", ctx.url, [], None, 1.0)],
        model,
        [(seconds, target)],
        start_target=target,
        max_connections=conns if model == "open" else 0,
        threads=ctx.threads,
    )
    me = psutil.Process()
    c0 = me.cpu_times()
    gen.start()
    try:
        while True:
            try:
                gen.next_snapshot(1.0)
            except StopIteration:
                break
        s = gen.summary()
    finally:
        gen.stop()
    c1 = me.cpu_times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    errors = sum(s["errors"].values())
    settings = f"{model}, threads={ctx.threads or 'cores'}, " + (
        f"users={conns}" if model == "closed" else f"rate={target:g}/s, max_connections={conns}"
    )
    r = Result(
        "revopipe", settings, s["requests"], errors, s["interval"], cpu, s["latency"]["p99"] * 1e3
    )
    if s.get("dropped"):
        r.notes.append(f"dropped {s['dropped']}")
    return r


# --- peers --------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk(ctx: Ctx, conns: int, seconds: float) -> Result:
    threads = ctx.threads or (os.cpu_count() or 1)
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds:g}s", "--latency", ctx.url]
    out, cpu, _ = run_tool(ctx, cmd, "wrk", seconds + 30)
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if not m:
        raise RuntimeError(f"wrk: unexpected output:\n{out}")
    secs = float(m.group(2)) * _UNITS[m.group(3)] / 1e3
    errors = 0
    for e in re.finditer(r"(?:connect|read|write|timeout) (\d+)", out):
        errors += int(e.group(1))
    if n := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(n.group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s|m)", out)
    p99_ms = float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else None
    return Result("wrk", " ".join(cmd[1:-1]), int(m.group(1)), errors, secs, cpu, p99_ms)


def locust(ctx: Ctx, users: int, seconds: float, user_rate: float) -> Result:
    if not shutil.which("locust"):
        raise FileNotFoundError("locust (pip install locust)")
    lf = ctx.tmp / "locustfile.py"
    lf.write_text(LOCUSTFILE)
    prefix = ctx.tmp / f"locust-{int(user_rate)}"
    cmd = ["locust", "-f", str(lf), "--headless", "-u", str(users), "-r", str(max(users, 1000))]
    cmd += ["-t", f"{seconds:g}s", "--host", ctx.url.rsplit(PATH, 1)[0], "--csv", str(prefix)]
    cmd += ["--only-summary", "--loglevel", "WARNING", "--stop-timeout", "1"]
    if ctx.locust_processes > 1:
        cmd += ["--processes", str(ctx.locust_processes)]
    env = dict(os.environ, BENCH_USER_RATE=str(user_rate), BENCH_PATH=PATH)
    _, cpu, _ = run_tool(ctx, cmd, "locust", seconds + 60, env=env)
    with open(f"{prefix}_stats.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    n = int(row["Request Count"])
    rps = float(row["Requests/s"])
    p99 = row.get("99%", "N/A")
    settings = f"FastHttpUser, -u {users} -r {max(users, 1000)}, processes={ctx.locust_processes}"
    if user_rate > 0:
        settings += f", constant_throughput({user_rate:g})"
    return Result(
        "Locust",
        settings,
        n,
        int(row["Failure Count"]),
        n / rps if rps > 0 else seconds,
        cpu,
        float(p99) if p99 not in ("N/A", "") else None,
    )


def hey(ctx: Ctx, rate: float, seconds: float, workers: int) -> Result:
    if not shutil.which("hey"):
        raise FileNotFoundError("hey (apt-get install hey)")
    per = rate / workers
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(workers), "-q", f"{per:g}", ctx.url]
    # Go's runtime would otherwise spread over every core it sees in /proc
    env = dict(os.environ, GOMAXPROCS="1") if ctx.pin else None
    out, cpu, _ = run_tool(ctx, cmd, "hey", seconds + 30, env=env)
    total = sum(int(c) for c in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    ok = sum(int(c) for c in re.findall(r"\[[23]\d\d\]\s+(\d+) responses", out))
    errs = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)+)", out)
    err_n = sum(int(x) for x in re.findall(r"\[(\d+)\]", errs.group(1))) if errs else 0
    secs = re.search(r"Total:\s+([\d.]+) secs", out)
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)
    return Result(
        "hey",
        f"-c {workers} -q {per:g} (per worker), GOMAXPROCS={env['GOMAXPROCS'] if env else 'all'}",
        total + err_n,
        total - ok + err_n,
        float(secs.group(1)) if secs else seconds,
        cpu,
        float(p99.group(1)) * 1e3 if p99 else None,
    )


def oha_path() -> str | None:
    return shutil.which("oha") or next(
        (p for p in ("/root/.cargo/bin/oha", "/tmp/oha-install/bin/oha") if os.path.exists(p)),
        None,
    )


def oha(ctx: Ctx, rate: float, seconds: float, conns: int) -> Result:
    exe = oha_path()
    if exe is None:
        raise FileNotFoundError("oha (cargo install oha --locked)")
    threads = ctx.threads or (os.cpu_count() or 1)
    args = ["-z", f"{seconds:g}s", "-q", f"{rate:g}", "-c", str(conns), "--latency-correction"]
    args += ["--no-tui", "--output-format", "json", "--worker-threads", str(threads)]
    out, cpu, _ = run_tool(ctx, [exe, *args, ctx.url], "oha", seconds + 30)
    doc = json.loads(out[out.index("{") :])
    summary = doc["summary"]
    statuses = doc.get("statusCodeDistribution", {})
    ok = sum(v for k, v in statuses.items() if k.startswith(("2", "3")))
    errors: dict[str, int] = doc.get("errorDistribution", {})
    # requests still in flight at the deadline are cut off, not failed: not counted
    cut = sum(v for k, v in errors.items() if "deadline" in k.lower())
    errs = sum(errors.values()) - cut
    total = sum(statuses.values()) + errs
    p99 = doc.get("latencyPercentiles", {}).get("p99")
    r = Result(
        "oha",
        " ".join(args[2:7]) + f", worker threads={threads}",
        total,
        total - ok,
        float(summary["total"]),
        cpu,
        p99 * 1e3 if p99 is not None else None,
    )
    r.notes += [f"{k}: {v}" for k, v in errors.items()]
    return r


# --- report -----------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "-"


def throughput(ctx: Ctx, conns: int, seconds: float, repeat: int) -> None:
    print(f"\n## 1. Max throughput: closed model, {conns} connections, {seconds:g} s\n")
    runs: list[tuple[str, Callable[[], Result]]] = [
        ("revopipe", lambda: revopipe(ctx, "closed", conns, seconds, conns)),
        ("wrk", lambda: wrk(ctx, conns, seconds)),
        ("Locust", lambda: locust(ctx, conns, seconds, 0.0)),
    ]
    results = run_all(runs, repeat, lambda r: r.rps, True)
    print(
        "| tool | settings | requests | errors | seconds | req/s | p99 ms | CPU s "
        "| CPU µs / req | req/s of each run |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.tool} | {r.settings} | {r.requests:,} | {r.errors:,} | {r.seconds:.2f} | "
            f"{r.rps:,.0f} | {fmt_ms(r.p99_ms)} | {r.cpu_s:.2f} | {r.cpu_per_100k * 10:.1f} | "
            f"{sampled(r, ',.0f')} |"
        )
    ours = next((r for r in results if r.tool == "revopipe"), None)
    if ours:
        print()
        for r in results:
            if r is not ours and r.rps > 0:
                print(f"ratio revopipe / {r.tool}: {ours.rps / r.rps:.2f}x")


def overhead(ctx: Ctx, rate: float, seconds: float, conns: int, repeat: int) -> None:
    print(f"\n## 2. Generator CPU at a fixed {rate:,.0f} req/s (open model), {seconds:g} s\n")
    workers = conns
    runs: list[tuple[str, Callable[[], Result]]] = [
        ("revopipe", lambda: revopipe(ctx, "open", rate, seconds, conns)),
        ("oha", lambda: oha(ctx, rate, seconds, conns)),
        ("hey", lambda: hey(ctx, rate, seconds, workers)),
        ("Locust", lambda: locust(ctx, workers, seconds, rate / workers)),
    ]
    results = run_all(runs, repeat, lambda r: r.cpu_per_100k, False)
    print(
        "| tool | settings | requests | errors | achieved req/s | p99 ms | CPU s "
        "| CPU s / 100k req | CPU s / 100k of each run |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        note = f" ({'; '.join(r.notes)})" if r.notes else ""
        print(
            f"| {r.tool} | {r.settings}{note} | {r.requests:,} | {r.errors:,} | {r.rps:,.0f} | "
            f"{fmt_ms(r.p99_ms)} | {r.cpu_s:.2f} | {r.cpu_per_100k:.3f} | {sampled(r, '.3f')} |"
        )
    ours = next((r for r in results if r.tool == "revopipe"), None)
    if ours:
        print()
        for r in results:
            if r is not ours and r.requests:
                ratio = r.cpu_per_100k / ours.cpu_per_100k
                print(
                    f"CPU per request, {r.tool} / revopipe: {ratio:.2f}x"
                    f" (achieved {r.rps / rate:.1%} of the rate; revopipe {ours.rps / rate:.1%})"
                )


def run_all(
    runs: list[tuple[str, Callable[[], Result]]],
    repeat: int,
    key: Callable[[Result], float],
    higher_is_better: bool,
) -> list[Result]:
    """Each tool `repeat` times, interleaved (a burst of background load then hits every tool,
    not one); per tool its best run by `key` -- noise only ever slows a tool down, so the best
    run is the least disturbed one -- with every run's figure kept for the table."""
    samples: dict[str, list[Result]] = {}
    skipped: set[str] = set()
    for _ in range(repeat):
        for name, fn in runs:
            if name in skipped:
                continue
            try:
                samples.setdefault(name, []).append(fn())
            except FileNotFoundError as e:
                print(f"  (skipped {name}: {e} not installed)")
                skipped.add(name)
            settle()
    results = []
    for name, _ in runs:
        if rs := sorted(samples.get(name, []), key=key):
            best = rs[-1] if higher_is_better else rs[0]
            best.samples = [key(r) for r in samples[name]]
            results.append(best)
    return results


def sampled(r: Result, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in r.samples) if len(r.samples) > 1 else "-"


def settle() -> None:
    # lets the previous tool's sockets close and nginx go idle before the next one starts
    time.sleep(1.0)


@contextlib.contextmanager
def workspace(args: argparse.Namespace) -> Iterator[Ctx]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-loadgen-"))
    tmp.chmod(0o755)
    port = free_port()
    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    ctx = Ctx(
        tmp=tmp,
        url=f"http://127.0.0.1:{port}{PATH}",
        port=port,
        pin=pin,
        threads=1 if pin else 0,
        locust_processes=args.locust_processes,
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    affinity = os.sched_getaffinity(0)
    nginx = None
    try:
        nginx = start_nginx(ctx)
        if pin:
            # this thread, the revopipe runtime it starts and every peer spawned from here
            os.sched_setaffinity(0, {1})
        yield ctx
    finally:
        for p in list(ctx.children):
            if p is not nginx:
                kill_group(p)
        if nginx is not None:
            stop_nginx(nginx)
        os.sched_setaffinity(0, affinity)
        signal.signal(signal.SIGTERM, old)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0, help="throughput run, s")
    ap.add_argument("--rate", type=float, default=10_000.0, help="fixed rate, req/s")
    ap.add_argument("--rate-duration", type=float, default=10.0, help="fixed-rate run, s")
    ap.add_argument("--quick", action="store_true", help="3 s runs (whole bench < 1 min)")
    ap.add_argument("--no-pin", action="store_true", help="no CPU pinning, tools use all cores")
    ap.add_argument("--only", choices=("throughput", "overhead"))
    ap.add_argument("--locust-processes", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2, help="runs per tool, interleaved; best")
    args = ap.parse_args()
    if args.quick:
        args.duration = args.rate_duration = 3.0
        args.repeat = 1
    with workspace(args) as ctx:
        cpu = platform.processor() or platform.machine()
        print(
            f"machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"python {platform.python_version()}"
        )
        nginx_v = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
        print(
            f"server: {nginx_v}, worker_processes {'1 pinned to CPU 0' if ctx.pin else 'auto'}, "
            f"{ctx.url} ({len(BODY)} bytes), keep-alive; generators "
            + ("pinned to CPU 1, one thread each" if ctx.pin else "unpinned, all cores")
        )
        busy = psutil.cpu_percent(interval=1.0)
        print(f"background CPU use just before the run: {busy:.0f}% (of all cores)")
        # warm nginx (open_file_cache, page cache) so the first tool is not penalised
        run_tool(ctx, ["wrk", "-t1", "-c8", "-d1s", ctx.url], "warmup", 20)
        if args.only in (None, "throughput"):
            throughput(ctx, args.connections, args.duration, args.repeat)
        if args.only in (None, "overhead"):
            overhead(ctx, args.rate, args.rate_duration, args.connections, args.repeat)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
