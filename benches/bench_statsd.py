"""StatsD ingest on loopback: datagrams/s sustained with zero loss, and the loss curve above
it, for revopipe's `statsd` source and collectd's `statsd` plugin (Debian `collectd-core`)
in the same run.

    python benches/bench_statsd.py [--rates 10000,25000,50000,100000,200000,400000]
                                   [--seconds 2] [--big-buffer 4194304]

For each rate a sender process (a small C program using sendmmsg, compiled here with `cc`;
a Python sender if there is no compiler) sends `rate x seconds` one-line datagrams
`bench.r<rate>:1|c`, paced evenly. What each receiver counted is read back from the counter
it keeps: revopipe's emitted cumulative total, collectd's `derive` value written by its
`csv` plugin. Each is run twice, like for like: with the OS default receive buffer
(collectd's statsd plugin sets none) and with a 4MiB one (revopipe's default `receive_buffer`;
collectd gets it through a small LD_PRELOAD shim on bind()). revopipe runs in this process
(asyncio loop, parsing in a worker thread), collectd as a foreground subprocess; the CPU
each spent per received datagram is shown too. A step's zero-loss figure is the rate the
sender reached, which on 2 cores may stay below the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from revopipe import Batch
from revopipe.testing import make
from revopipe_plugins.statsd.source import StatsdSource

COLLECTD = "/usr/sbin/collectd"

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* sender HOST PORT RATE COUNT PAYLOAD: COUNT datagrams at RATE per second. */
int main(int argc, char **argv) {
    if (argc != 6) return 2;
    double rate = atof(argv[3]);
    long count = atol(argv[4]);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
    enum { BATCH = 32 };
    struct iovec iov = {argv[5], strlen(argv[5])};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long sent = 0, refused = 0;
    double start = now();
    while (sent < count) {
        long due = (long)((now() - start) * rate) + 1;
        if (due > count) due = count;
        long todo = due - sent;
        if (todo <= 0) { struct timespec ts = {0, 20000}; nanosleep(&ts, NULL); continue; }
        if (todo > BATCH) todo = BATCH;
        int n = sendmmsg(fd, msgs, (unsigned)todo, 0);
        if (n < 0) {
            int transient = errno == ECONNREFUSED || errno == ENOBUFS || errno == EAGAIN;
            if (transient && ++refused < 100000) continue;
            perror("sendmmsg");
            return 1;
        }
        sent += n;
    }
    printf("%ld %.6f\n", sent, now() - start);
    return 0;
}
"""

SENDER_PY = """
import socket, sys, time
host, port, payload = sys.argv[1], int(sys.argv[2]), sys.argv[5].encode()
rate, count = float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
sent = 0
start = time.perf_counter()
while sent < count:
    due = min(count, int((time.perf_counter() - start) * rate) + 1)
    if due <= sent:
        time.sleep(0.0001)
        continue
    for _ in range(due - sent):
        s.send(payload)
    sent = due
print(sent, time.perf_counter() - start)
"""


# collectd's statsd plugin has no receive-buffer option: for the like-for-like run with a
# larger buffer this shim sets SO_RCVBUF on each UDP socket it binds, as revopipe does.
RCVBUF_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    const char *want = getenv("BENCH_RCVBUF");
    int type;
    socklen_t tl = sizeof type;
    if (want && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM) {
        int size = atoi(want);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    return real(fd, addr, len);
}
"""


def compile_c(workdir: Path, name: str, source: str, *flags: str) -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    src, out = workdir / f"{name}.c", workdir / name
    src.write_text(source)
    done = subprocess.run([cc, "-O2", *flags, "-o", str(out), str(src)], capture_output=True)
    return out if done.returncode == 0 else None


def sender_command(workdir: Path) -> tuple[list[str], str]:
    exe = compile_c(workdir, "sender", SENDER_C)
    if exe:
        return [str(exe)], "C sendmmsg"
    return [sys.executable, "-c", SENDER_PY], "Python (no C compiler found)"


@dataclass
class Step:
    rate: int
    sent: int
    seconds: float
    received: int
    cpu: float


async def send(sender: list[str], port: int, rate: int, count: int, name: str) -> tuple[int, float]:
    proc = await asyncio.create_subprocess_exec(
        *sender,
        "127.0.0.1",
        str(port),
        str(rate),
        str(count),
        f"{name}:1|c",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"sender failed with exit code {proc.returncode}")
    sent, seconds = out.split()
    return int(sent), float(seconds)


async def settle(read: Callable[[], int], quiet: float, limit: float = 30.0) -> int:
    """The count once it has stopped changing for `quiet` seconds."""
    value, since, start = read(), time.monotonic(), time.monotonic()
    while time.monotonic() - start < limit:
        await asyncio.sleep(min(0.1, quiet / 4))
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return value


class Revopipe:
    """The `statsd` source in this process, keeping the last counter total per name."""

    def __init__(self, receive_buffer: int, workdir: Path) -> None:
        workdir.mkdir()
        self.totals: dict[str, float] = {}
        self.source = make(
            StatsdSource,
            {"address": "127.0.0.1:0", "receive_buffer": receive_buffer},
            workdir,
            name="bench",
        )

    async def emit(self, batch: Batch) -> None:
        m = batch.metrics
        for name, value in zip(m.names, m.values, strict=True):
            self.totals[name] = value

    async def start(self) -> int:
        await self.source.start()
        self.task = asyncio.create_task(self.source.run(self.emit))
        assert self.source.bound_address is not None
        return self.source.bound_address[1]

    async def step(self, sender: list[str], port: int, rate: int, seconds: float) -> Step:
        name = f"bench.r{rate}"
        cpu0 = time.process_time()
        sent, took = await send(sender, port, rate, int(rate * seconds), name)
        received = await settle(lambda: int(self.totals.get(name, 0)), quiet=0.5)
        return Step(rate, sent, took, received, time.process_time() - cpu0)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.source.stop()


class Collectd:
    """collectd in the foreground with its statsd plugin; counters read from csv files."""

    def __init__(self, workdir: Path, port: int, rcvbuf: int, shim: Path | None) -> None:
        self.dir = workdir / f"collectd-{port}"
        self.dir.mkdir()
        self.port = port
        self.env = dict(os.environ)
        if rcvbuf and shim:
            self.env.update(LD_PRELOAD=str(shim), BENCH_RCVBUF=str(rcvbuf))
        (self.dir / "collectd.conf").write_text(
            f"""
Hostname "bench"
FQDNLookup false
BaseDir "{self.dir}"
PIDFile "{self.dir}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 1
LoadPlugin statsd
LoadPlugin csv
<Plugin statsd>
  Host "127.0.0.1"
  Port "{port}"
  DeleteCounters false
</Plugin>
<Plugin csv>
  DataDir "{self.dir}/csv"
  StoreRates false
</Plugin>
"""
        )

    async def start(self) -> int:
        self.proc = subprocess.Popen(
            [COLLECTD, "-f", "-C", str(self.dir / "collectd.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        self.ps = psutil.Process(self.proc.pid)
        # Ready once its socket is bound: a probe counter shows up in the csv output.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        deadline = time.monotonic() + 20
        while self.count("bench.probe") == 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("collectd did not start (see its config in the temp dir)")
            probe.sendto(b"bench.probe:1|c", ("127.0.0.1", self.port))
            await asyncio.sleep(0.2)
        probe.close()
        return self.port

    def count(self, name: str) -> int:
        files = sorted((self.dir / "csv" / "bench" / "statsd").glob(f"derive-{name}-*"))
        if not files:
            return 0
        last = files[-1].read_text().strip().splitlines()[-1]
        return int(float(last.split(",")[1])) if "," in last else 0

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    async def step(self, sender: list[str], port: int, rate: int, seconds: float) -> Step:
        name = f"bench.r{rate}"
        cpu0 = self.cpu()
        sent, took = await send(sender, port, rate, int(rate * seconds), name)
        # It writes each interval (1 s): unchanged over 2.5 s means it has all of it.
        received = await settle(lambda: self.count(name), quiet=2.5)
        return Step(rate, sent, took, received, self.cpu() - cpu0)

    async def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def sustained(steps: list[Step]) -> tuple[float, bool]:
    """The fastest sending rate reached before the first step that lost anything, and
    whether no step lost anything (then it is only a lower bound: the sender's limit)."""
    best = 0.0
    for s in steps:
        if s.received < s.sent:
            return best, False
        best = max(best, s.sent / s.seconds)
    return best, True


async def run(args: argparse.Namespace) -> None:
    rates = [int(r) for r in args.rates.split(",")]
    big = args.big_buffer
    with tempfile.TemporaryDirectory(prefix="bench_statsd_") as tmp:
        workdir = Path(tmp)
        sender, sender_kind = sender_command(workdir)
        shim = compile_c(workdir, "rcvbuf.so", RCVBUF_SHIM_C, "-shared", "-fPIC", "-ldl")
        receivers: list[tuple[str, Revopipe | Collectd]] = [
            ("revopipe, OS default buffer", Revopipe(0, workdir / "a")),
        ]
        if os.path.exists(COLLECTD):
            receivers.append(
                ("collectd, OS default buffer", Collectd(workdir, free_port(), 0, None))
            )
        receivers.append((f"revopipe, {big:,} B buffer", Revopipe(big, workdir / "b")))
        if os.path.exists(COLLECTD) and shim:
            receivers.append(
                (f"collectd, {big:,} B buffer", Collectd(workdir, free_port(), big, shim))
            )
        ports = [await r.start() for _, r in receivers]
        results: dict[str, list[Step]] = {label: [] for label, _ in receivers}
        try:
            for rate in rates:
                for (label, r), port in zip(receivers, ports, strict=True):
                    step = await r.step(sender, port, rate, args.seconds)
                    results[label].append(step)
                    got = f"{step.received:,}/{step.sent:,}"
                    print(f"  {rate:>9,}/s  {label}: {got}", file=sys.stderr)
        finally:
            for _, r in receivers:
                await r.stop()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, "
        f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; "
        f"sender: {sender_kind}; {args.seconds:g} s per rate; one-line datagrams "
        "`bench.r<rate>:1|c`; revopipe's default receive_buffer is 4MiB"
    )
    print()
    print("| target rate (datagrams/s) | receiver | sent at | received | loss | CPU µs/datagram |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for i, rate in enumerate(rates):
        for label, steps in results.items():
            s = steps[i]
            loss = 100 * (s.sent - s.received) / s.sent if s.sent else 0.0
            per = 1e6 * s.cpu / s.received if s.received else float("nan")
            print(
                f"| {rate:,} | {label} | {s.sent / s.seconds:,.0f}/s | {s.received:,} "
                f"| {loss:.2f}% | {per:.2f} |"
            )
    print("\nzero loss sustained (fastest sending rate before the first loss):")
    best = {label: sustained(steps) for label, steps in results.items()}
    for label, (rate, bound) in best.items():
        more = " or more (no loss at the fastest rate tried)" if bound else ""
        print(f"  {label}: {rate:,.0f} datagrams/s{more}")
    if len(best) < 4:
        print(f"collectd: not installed ({COLLECTD}, `apt-get install collectd-core`) or no cc")
        return
    labels = list(best)
    for ours, peer in ((labels[0], labels[1]), (labels[2], labels[3])):
        if best[peer][0]:
            ratio = best[ours][0] / best[peer][0]
            print(f"ratio {ours} / {peer}: {ratio:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="10000,25000,50000,100000,200000,400000")
    ap.add_argument("--seconds", type=float, default=2.0, help="sending time per rate")
    ap.add_argument(
        "--big-buffer",
        type=int,
        default=4 * 2**20,
        help="SO_RCVBUF in bytes for the second like-for-like pair (revopipe's default)",
    )
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
