"""Scale-out over NATS JetStream: end-to-end histogram events per second from agents through
tier-1 aggregators (partial snapshots) and the elected tier-2 leader (global windows), for
1 and 2 aggregators and several batch sizes, against the single-process pipeline
(generate -> aggregate -> sink in one pipeline) that does the same aggregation with
no transport: the ratio is what the transport and the two tiers cost.

Every NATS case gets a fresh `nats-server -js` (tmp store, free port) and real
`revopipe run` subprocesses with generated TOML:

    agent i:     generate (kind=histogram, count=N/agents, interval 0) -> nats sink
                 (subject revopipe.data.agent-i)
    aggregator:  nats source (durable "ingest") -> aggregate mode=partial -> nats sink
                 (revopipe.partials)
                 nats source (leader "global", durable "global") -> aggregate (window,
                 watermark data) -> sqlite
    reference:   generate -> aggregate (window) -> sqlite, run inside this script (like
                 bench_engine.py), so it has no process start-up and its CPU is exact

The output sink is sqlite because it commits every batch it writes: the bench reads the
sum of the `<name>.count` gauges while the pipeline runs (jsonl buffers until a drain).
Aggregators are started first and must be ready with a tier-2 leader elected; the clock
starts when the agents are spawned and stops when the leader's output has counted all N
values, so the figure includes the agents' process start-up and the closing of the last
window (`--window`/`--grace` keep that tail short). The count is read again a window
later and must still be exactly N (no duplicates). The agents' start-up (measured on an
agent that emits nothing) is taken out of the 'net' figures. The reference is timed
around `Pipeline.run` (its drain closes the last window at once) and checked the same way.
CPU seconds: the aggregators' and nats-server's from ready to done, the agents' whole
(reaped) processes. "events / agg CPU-s" is a sizing figure that does not depend on how
many of this machine's 2 cores the agents took from the aggregators.

    python benches/bench_nats.py [--messages 2000] [--max-events 2000000] [--agents 2]
        [--reference-events 5000000] [--batch-sizes 100,1000,5000] [--aggregators 1,2]
        [--repeat 1] [--storage file]

A NATS case sends min(messages x batch size, max-events) events, so every batch size
runs long enough for the agents' start-up not to dominate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from revopipe import Pipeline
from revopipe.config.load import load_dict
from revopipe.plugins import build_registry

METRIC = "bench.latency"
POLL = 0.05
"""Seconds between two counts of the output (a bound on the timing error)."""
STOP_WAIT = 4.0
"""How long the processes of a finished case get to drain before they are killed."""
AGENT_RATE = 2000
"""A typical agent's rate (events/s) for the sizing line."""
NATS_BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    cpu: float = 0.0

    def read_cpu(self) -> float:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(self.popen.pid)
            t = p.cpu_times()
            self.cpu = t.user + t.system + t.children_user + t.children_system
        return self.cpu

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (exit {self.popen.poll()}):\n" + "\n".join(
            text.splitlines()[-lines:]
        )


@dataclass
class Case:
    root: Path
    args: argparse.Namespace
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str]) -> Proc:
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            # own session, so stopping it never signals this script
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def revopipe(self, name: str, toml: str) -> Proc:
        path = self.root / f"{name}.toml"
        path.write_text(toml)
        return self.spawn(name, [sys.executable, "-m", "revopipe", "run", str(path)])

    def close(self) -> None:
        # All at once, so a slow drain costs its wait once, not once per process. The
        # measurement is over: a second SIGTERM makes revopipe stop without draining.
        for sig_wait in (1.0, STOP_WAIT):
            for p in self.procs:
                p.signal(signal.SIGTERM)
            end = time.monotonic() + sig_wait
            while time.monotonic() < end and any(p.popen.poll() is None for p in self.procs):
                time.sleep(0.05)
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.kill()
            p.popen.wait(10)

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs)


# ------------------------------------------------------------------------------- configs


def agent_toml(case: Case, name: str, url: str, count: int, batch: int) -> str:
    return f"""
[pipeline]
name = {q(name)}
data_dir = {q(str(case.root / name))}

[sources.gen]
type = "generate"
name = {q(METRIC)}
kind = "histogram"
count = {count}
batch_size = {batch}
interval = "0s"

[sinks.bus]
type = "nats"
inputs = ["gen"]
url = {q(url)}
subject = {q("revopipe.data." + name)}
storage = {q(case.args.storage)}
"""


def window_toml(case: Case, inputs: str, out: Path) -> str:
    a = case.args
    return f"""
[processors.window]
type = "aggregate"
inputs = [{q(inputs)}]
window = "{a.window}s"
grace = "{a.grace}s"
snapshots = false
percentiles = [50, 99]
{'watermark = "data"' if inputs == "global" else ""}
# A short grace keeps the timed tail short; when tier 1 lags behind by more than that,
# its partials are folded into the open window instead of dropped, so every value is
# still counted (production uses grace > ack_wait instead: see examples/).
late = "current"

[sinks.out]
# sqlite commits every batch it writes, so the bench can count while the pipeline runs
type = "sqlite"
inputs = ["window"]
path = {q(out.name)}
rollups = []
"""


def aggregator_toml(case: Case, name: str, url: str, api: int, out: Path) -> str:
    a = case.args
    return f"""
[pipeline]
name = {q(name)}
data_dir = {q(str(case.root / name))}
api = "127.0.0.1:{api}"

[sources.ingest]
type = "nats"
url = {q(url)}
subject = "revopipe.data.>"
durable = "ingest"
storage = {q(a.storage)}
instance = {q(name)}

[processors.partial]
type = "aggregate"
inputs = ["ingest"]
mode = "partial"
window = "{a.window}s"

[sinks.partials]
type = "nats"
inputs = ["partial"]
url = {q(url)}
subject = "revopipe.partials"
storage = {q(a.storage)}

[sources.global]
type = "nats"
url = {q(url)}
subject = "revopipe.partials"
durable = "global"
leader = "global"
leader_ttl = "2s"
takeover_delay = "0s"
storage = {q(a.storage)}
instance = {q(name)}
{window_toml(case, "global", out)}
"""


def reference_toml(case: Case, count: int, batch: int, out: Path) -> str:
    return f"""
[pipeline]
name = "reference"
data_dir = {q(str(case.root / "reference"))}

[sources.gen]
type = "generate"
name = {q(METRIC)}
kind = "histogram"
count = {count}
batch_size = {batch}
interval = "0s"
{window_toml(case, "gen", out)}
"""


# ------------------------------------------------------------------------------ waiting


def counted(db: Path) -> float:
    """The values tier 2 (or the reference) has counted so far: the sum of its
    `<METRIC>.count` gauges, one per closed window and series."""
    if not db.exists():
        return 0.0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as c:
            row = c.execute(
                "SELECT sum(p.value) FROM points p JOIN series s ON s.id = p.series_id "
                "WHERE s.name = ?",
                (f"{METRIC}.count",),
            ).fetchone()
    except sqlite3.Error:
        return 0.0  # not created yet, or busy: next poll
    return float(row[0] or 0.0)


def wait_for(what: str, check: object, deadline: float, case: Case) -> None:
    assert callable(check)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"bench_nats: {what} not within {deadline}s\n{case.logs()}")


def start_nats(case: Case) -> str:
    port = free_port()
    store = case.root / "nats"
    store.mkdir()
    case.spawn(
        "nats-server", [NATS_BINARY, "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)]
    )
    url = f"nats://127.0.0.1:{port}"

    async def jetstream_up() -> bool:
        import nats

        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return False  # not listening yet (nats-py would log a traceback)
        try:
            nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0)
        except Exception:
            return False
        try:
            await nc.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    wait_for("nats-server with JetStream", lambda: asyncio.run(jetstream_up()), 15, case)
    return url


def api_get(port: int, path: str) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2, trust_env=False)
    except httpx.HTTPError:
        return None


def leader_status(port: int) -> dict[str, Any]:
    """The tier-2 source's status: leader, pending and done message counts."""
    r = api_get(port, "/api/v1/components/global/control/status")
    if r is None or r.status_code != 200:
        return {}
    result = r.json().get("result")
    return result if isinstance(result, dict) else {}


def is_leader(port: int) -> bool:
    return bool(leader_status(port).get("leader"))


# -------------------------------------------------------------------------------- cases


@dataclass
class Result:
    label: str
    aggregators: int
    batch: int
    events: int
    seconds: float
    """spawn of the agents (or the reference) -> every value counted by the output"""
    published: float
    """spawn of the agents -> the last agent exited (all its batches acked by the stream)"""
    agent_cpu: float
    agg_cpu: float
    """aggregators' CPU seconds from ready to done (the reference: its own process's)"""
    nats_cpu: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class Startup:
    wall: float
    cpu: float


def children_cpu() -> float:
    """CPU seconds of the reaped child processes of this script, so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_nats_case(args: argparse.Namespace, aggregators: int, batch: int) -> Result:
    events = min(args.messages * batch, args.max_events)
    events -= events % (batch * args.agents)
    per_agent = events // args.agents
    with tempfile.TemporaryDirectory(prefix="revopipe-bench-nats-") as tmp:
        case = Case(Path(tmp), args)
        try:
            url = start_nats(case)
            aggs: list[tuple[Proc, int, Path]] = []
            for i in range(aggregators):
                name, api = f"agg-{i}", free_port()
                db = case.root / name / "out.db"
                proc = case.revopipe(name, aggregator_toml(case, name, url, api, db))
                aggs.append((proc, api, db))
            for proc, api, _ in aggs:
                wait_for(f"{proc.name} /readyz", lambda api=api: ready(api), 60, case)
            wait_for("a tier-2 leader", lambda: any(is_leader(a) for _, a, _ in aggs), 30, case)
            leader_db = next(db for _, api, db in aggs if is_leader(api))
            # the aggregators' start-up is not the work being measured
            agg_cpu0 = sum(p.read_cpu() for p, _, _ in aggs)
            nats_cpu0 = case.procs[0].read_cpu()
            reaped0 = children_cpu()

            t0 = time.monotonic()
            agents = [
                case.revopipe(f"agent-{i}", agent_toml(case, f"agent-{i}", url, per_agent, batch))
                for i in range(args.agents)
            ]
            published = 0.0
            agent_cpu = 0.0
            while (got := counted(leader_db)) < events:
                if not published and all(a.popen.poll() is not None for a in agents):
                    published = time.monotonic() - t0
                    agent_cpu = children_cpu() - reaped0  # only the agents were reaped since
                    if any(a.popen.returncode != 0 for a in agents):
                        raise SystemExit(f"bench_nats: agent failed\n{case.logs()}")
                if time.monotonic() > t0 + args.timeout:
                    raise SystemExit(
                        f"bench_nats: tier 2 counted {got:.0f} of {events} values within "
                        f"{args.timeout}s\n{case.logs()}"
                    )
                time.sleep(POLL)
            seconds = time.monotonic() - t0
            agg_cpu = sum(p.read_cpu() for p, _, _ in aggs) - agg_cpu0
            nats_cpu = case.procs[0].read_cpu() - nats_cpu0
            if not published:  # done before the poll saw the agents exit
                for a in agents:
                    a.popen.wait(30)
                published = time.monotonic() - t0
                agent_cpu = children_cpu() - reaped0
            time.sleep(args.window + args.grace + 0.5)  # a double count would show now
            if (got := counted(leader_db)) != events:
                raise SystemExit(f"bench_nats: tier 2 counted {got:.0f} values, expected {events}")
            return Result(
                "nats", aggregators, batch, events, seconds, published, agent_cpu, agg_cpu, nats_cpu
            )
        finally:
            case.close()


def run_reference(args: argparse.Namespace, batch: int) -> Result:
    """The same aggregation in this process (as bench_engine.py runs pipelines): no
    process start-up to subtract, and CPU time read exactly."""
    events = args.reference_events - args.reference_events % batch
    with tempfile.TemporaryDirectory(prefix="revopipe-bench-nats-") as tmp:
        case = Case(Path(tmp), args)
        db = case.root / "reference" / "out.db"
        registry = build_registry()
        spec = load_dict(tomllib.loads(reference_toml(case, events, batch, db)), registry)
        pipeline = Pipeline(spec, registry)
        t0, cpu0 = time.perf_counter(), time.process_time()
        # it ends once generate is done; the drain closes and writes every window
        anyio.run(pipeline.run)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if (got := counted(db)) != events:
            raise SystemExit(f"bench_nats: reference counted {got:.0f} of {events}")
        return Result("reference", 0, batch, events, seconds, seconds, 0.0, cpu, 0.0)


def ready(api: int) -> bool:
    r = api_get(api, "/readyz")
    return r is not None and r.status_code == 200


def startup(args: argparse.Namespace) -> Startup:
    """Wall and CPU seconds from spawning an agent-shaped `revopipe run` (generate ->
    nats sink) that emits nothing to its /readyz answering 200: the start-up each timed
    NATS run pays once on its critical path."""
    with tempfile.TemporaryDirectory(prefix="revopipe-bench-nats-") as tmp:
        case = Case(Path(tmp), args)
        api = free_port()
        url = start_nats(case)
        toml = f"""
[pipeline]
data_dir = {q(str(case.root / "probe"))}
api = "127.0.0.1:{api}"
[sources.gen]
type = "generate"
kind = "histogram"
interval = "1h"
batch_size = 1

[sinks.out]
type = "nats"
inputs = ["gen"]
url = {q(url)}
subject = "revopipe.data.probe"
storage = {q(args.storage)}
"""
        try:
            t0 = time.monotonic()
            proc = case.revopipe("probe", toml)
            wait_for("the start-up probe's /readyz", lambda: ready(api), 60, case)
            return Startup(time.monotonic() - t0, proc.read_cpu())
        finally:
            case.close()


def median_startup(args: argparse.Namespace) -> Startup:
    ups = sorted((startup(args) for _ in range(3)), key=lambda u: u.wall)
    return ups[1]


def median_result(runs: list[Result]) -> Result:
    runs = sorted(runs, key=lambda r: r.seconds)
    return runs[len(runs) // 2]


def report(
    args: argparse.Namespace, ups: dict[str, Startup], results: dict[tuple[str, int, int], Result]
) -> None:
    agent_up = ups["agent"]
    print(
        "\nstart-up of an agent's `revopipe run` that emits nothing (spawn -> /readyz, "
        f"median of 3): {agent_up.wall:.2f} s wall, {agent_up.cpu:.2f} s CPU. Every NATS "
        "run pays it on its critical path: 'net' figures take it out (wall once, CPU once "
        "per agent; the aggregators' start-up is never timed, the reference runs in this "
        "process)."
    )
    print()
    print(
        "| pipeline | aggs | batch | events | s | events/s | net events/s | agents done s "
        "| agents CPU s | agg CPU s | nats CPU s | events / CPU-s (all, net) "
        "| events / agg CPU-s |"
    )
    print("| --- |" + " ---: |" * 12)
    for (label, n, batch), r in results.items():
        ref = label == "reference"
        what = "one process (reference)" if ref else "agents -> NATS -> 2 tiers"
        print(
            f"| {what} | {n or '-'} | {batch} | {r.events} | {r.seconds:.2f} | {r.rate:,.0f} | "
            f"{net_rate(r, ups):,.0f} | {'-' if ref else f'{r.published:.2f}'} | "
            f"{'-' if ref else f'{r.agent_cpu:.2f}'} | {r.agg_cpu:.2f} | "
            f"{'-' if ref else f'{r.nats_cpu:.2f}'} | {r.events / net_cpu(r, ups, args):,.0f} | "
            f"{'-' if ref else f'{r.events / max(r.agg_cpu, 1e-9):,.0f}'} |"
        )

    print()
    print(
        "| batch | NATS 1 agg / reference (net events/s) | NATS 1 agg / reference "
        "(events per CPU-s, net) | 2 aggs / 1 agg (events/s) |"
    )
    print("| ---: | ---: | ---: | ---: |")
    for batch in sorted({b for _, _, b in results}):
        ref = results.get(("reference", 0, batch))
        one = results.get(("nats", 1, batch))
        two = results.get(("nats", 2, batch))
        wall = cpu = scaling = "-"
        if one and ref:
            wall = f"{net_rate(one, ups) / net_rate(ref, ups):.2f}"
            per_cpu_one = one.events / net_cpu(one, ups, args)
            per_cpu_ref = ref.events / net_cpu(ref, ups, args)
            cpu = f"{per_cpu_one / per_cpu_ref:.2f}"
        if one and two:
            scaling = f"{two.rate / one.rate:.2f}"
        print(f"| {batch} | {wall} | {cpu} | {scaling} |")

    print()
    for batch in sorted({b for _, _, b in results}):
        one = results.get(("nats", 1, batch))
        if one is None:
            continue
        per_cpu = one.events / max(one.agg_cpu, 1e-9)
        print(
            f"sizing, batch {batch}: one aggregator took {one.rate:,.0f} events/s end to end "
            f"here = {one.rate / AGENT_RATE:,.0f} agents at {AGENT_RATE:,} events/s; it spent "
            f"1 CPU-s per {per_cpu:,.0f} events = {per_cpu / AGENT_RATE:,.0f} such agents per "
            "core it has to itself"
        )
    print(f"(median of {args.repeat} run(s) per case; a fresh nats-server per run)")


def net_rate(r: Result, ups: dict[str, Startup]) -> float:
    if r.label == "reference":
        return r.rate  # in process: nothing to take out
    return r.events / max(r.seconds - ups["agent"].wall, 1e-9)


def net_cpu(r: Result, ups: dict[str, Startup], args: argparse.Namespace) -> float:
    """CPU seconds every process of the case spent on the work (start-ups taken out)."""
    if r.label == "reference":
        return max(r.agg_cpu, 1e-9)
    agents = max(r.agent_cpu - args.agents * ups["agent"].cpu, 0.0)
    return max(agents + r.agg_cpu + r.nats_cpu, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--messages", type=int, default=2000, help="agent batches (NATS messages) per case"
    )
    ap.add_argument("--max-events", type=int, default=2_000_000, help="cap on events per NATS case")
    ap.add_argument(
        "--reference-events", type=int, default=5_000_000, help="events of the reference"
    )
    ap.add_argument("--agents", type=int, default=2, help="agent processes sharing the events")
    ap.add_argument("--batch-sizes", default="100,1000,5000")
    ap.add_argument("--aggregators", default="1,2", help="aggregator counts to compare")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (median)")
    ap.add_argument("--storage", choices=["file", "memory"], default="file")
    ap.add_argument("--window", type=float, default=1.0, help="window of both tiers (s)")
    ap.add_argument("--grace", type=float, default=0.5, help="tier-2 / reference grace (s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="limit per case (s)")
    args = ap.parse_args()
    if not os.path.exists(NATS_BINARY):
        raise SystemExit("bench_nats: nats-server not found; install the `nats-server` package")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    agg_counts = [int(n) for n in args.aggregators.split(",")]

    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs python "
        f"{platform.python_version()}; nats-server {NATS_BINARY}; storage {args.storage}; "
        f"{args.agents} agents; window {args.window}s, grace {args.grace}s"
    )
    ups = {"agent": median_startup(args)}
    results: dict[tuple[str, int, int], Result] = {}
    for batch in batch_sizes:
        ref = median_result([run_reference(args, batch) for _ in range(args.repeat)])
        results[("reference", 0, batch)] = ref
        for n in agg_counts:
            runs = [run_nats_case(args, n, batch) for _ in range(args.repeat)]
            results[("nats", n, batch)] = median_result(runs)
    report(args, ups, results)


if __name__ == "__main__":
    main()
