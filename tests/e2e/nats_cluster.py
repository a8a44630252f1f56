"""A scale-out cluster on loopback for the NATS end-to-end tests: one real nats-server,
`revopipe run` agents (http source -> nats sink) and aggregators (tier 1 + tier 2 of
examples/nats-aggregator.toml), each a subprocess with a generated TOML in a tmp dir.

Everything started here is tracked by its `Cluster` and killed by `Cluster.close()`, so
a failing test leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from revopipe_plugins.nats.tests.server import free_port, require_binary

STREAM = "REVOPIPE"
LEADER_BUCKET = "revopipe_leaders"


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Proc:
    """One subprocess with its log file."""

    name: str
    argv: list[str]
    log: Path
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            # Own session: a kill reaches only this process, never the test runner.
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill9(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    async def terminate(self, timeout: float) -> int | None:
        """SIGTERM (a revopipe drains), SIGKILL after `timeout`; the exit status."""
        p = self.popen
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while p.poll() is None and time.monotonic() < deadline:
                await anyio.sleep(0.1)
            if p.poll() is None:
                p.kill()
        return p.wait(10)

    def describe(self) -> str:
        code = None if self.popen is None else self.popen.poll()
        return f"--- {self.name} (exit {code}) log {self.log}:\n{tail(self.log)}"


@dataclass
class Agent:
    name: str
    proc: Proc
    http_port: int
    api_port: int

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/ingest"


@dataclass
class Aggregator:
    name: str
    proc: Proc
    api_port: int
    out: Path
    config: Path


PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Cluster:
    """nats-server + agents + aggregators under `root`; `close()` kills all of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nats_port = free_port()
        self.nats_store = root / "nats"
        self.nats: Proc | None = None
        self.agents: list[Agent] = []
        self.aggregators: list[Aggregator] = []
        self.procs: list[Proc] = []
        self.runner: list[str] = [sys.executable, "-m", "revopipe"]

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    # -- nats-server ---------------------------------------------------------------------

    async def start_nats(self, deadline: float = 15.0) -> None:
        self.nats_store.mkdir(parents=True, exist_ok=True)
        argv = [
            require_binary(),
            "-js",
            "-sd",
            str(self.nats_store),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.nats_port),
        ]
        self.nats = Proc("nats-server", argv, self.root / "nats.log", self.root)
        self.procs.append(self.nats)
        self.nats.start()
        await self.wait_nats(deadline)

    async def wait_nats(self, deadline: float) -> None:
        """Until JetStream answers (it recovers its store before it does)."""
        end = time.monotonic() + deadline
        last: Exception | None = None
        while time.monotonic() < end:
            assert self.nats is not None
            if not self.nats.alive:
                raise AssertionError("nats-server exited\n" + self.nats.describe())
            try:
                async with self.jetstream() as js:
                    await js.account_info()
                return
            except Exception as exc:  # not up yet
                last = exc
                await anyio.sleep(0.1)
        raise AssertionError(f"nats-server not ready within {deadline}s: {last!r}")

    async def stop_nats(self) -> None:
        assert self.nats is not None
        await self.nats.terminate(10)

    async def restart_nats(self) -> None:
        """Same port, same store: what a real restart looks like to the clients."""
        assert self.nats is not None
        self.nats.start()
        await self.wait_nats(20)

    @contextlib.asynccontextmanager
    async def jetstream(self) -> AsyncIterator[Any]:
        import nats

        async def quiet(exc: Exception) -> None:
            # Polls while the server is down fail by design; the caller retries.
            pass

        nc = await nats.connect(
            self.nats_url,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
        try:
            yield nc.jetstream()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def consumer(self, durable: str) -> tuple[int, int] | None:
        """(num_pending, num_ack_pending) of a durable, None if it does not exist (yet)."""
        try:
            async with self.jetstream() as js:
                info = await js.consumer_info(STREAM, durable)
        except Exception:
            return None
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    async def acked(self, durable: str) -> int:
        """The stream sequence up to which `durable` has every message acked (0: none)."""
        try:
            async with self.jetstream() as js:
                info = await js.consumer_info(STREAM, durable)
        except Exception:
            return 0
        return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0

    async def leader(self, election: str = "global") -> str | None:
        """The instance holding `election` in the KV bucket, None if nobody does."""
        try:
            async with self.jetstream() as js:
                kv = await js.key_value(LEADER_BUCKET)
                entry = await kv.get(election)
        except Exception:
            return None
        raw = entry.value or b""
        text = raw.decode(errors="replace")
        for agg in self.aggregators:
            if agg.name in text:
                return agg.name
        return None

    # -- revopipe processes ----------------------------------------------------------------

    def _proc(self, name: str, config_text: str) -> tuple[Proc, Path]:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        config = d / "pipeline.toml"
        config.write_text(config_text)
        argv = [*self.runner, "run", str(config), "--log-level", "info"]
        proc = Proc(name, argv, d / "run.log", d)
        self.procs.append(proc)
        return proc, config

    def add_agent(self) -> Agent:
        name = f"agent-{len(self.agents) + 1}"
        http_port, api_port = free_port(), free_port()
        text = f"""
[pipeline]
name = {toml_str(name)}
data_dir = {toml_str(str(self.root / name / "data"))}
api = "127.0.0.1:{api_port}"
drain_timeout = "15s"

[sources.ingest]
type = "http"
address = "127.0.0.1:{http_port}"
accept_timeout = "5s"

[sinks.bus]
type = "nats"
inputs = ["ingest"]
url = {toml_str(self.nats_url)}
subject = "revopipe.data.{name}"
storage = "file"
retry_initial = "100ms"
retry_max = "1s"
"""
        proc, _ = self._proc(name, text)
        agent = Agent(name, proc, http_port, api_port)
        self.agents.append(agent)
        return agent

    def add_aggregator(self, after_window: str = "", leader_ttl: str = "2s") -> Aggregator:
        """Tier 1 + tier 2 as in examples/nats-aggregator.toml with short durations.
        `after_window` names a processor config inserted after tier 2's window (alerts);
        its name must be `alerts` so the jsonl sink reads from it."""
        name = f"agg-{'abcdefgh'[len(self.aggregators)]}"
        api_port = free_port()
        out = self.root / name / "out.jsonl"
        sink_input = "alerts" if after_window else "window"
        pct = ", ".join(f"{q:g}" for q in PERCENTILES)
        text = f"""
[pipeline]
name = {toml_str(name)}
data_dir = {toml_str(str(self.root / name / "data"))}
api = "127.0.0.1:{api_port}"
drain_timeout = "15s"

[sources.ingest]
type = "nats"
url = {toml_str(self.nats_url)}
subject = "revopipe.data.>"
durable = "ingest"
ack_wait = "3s"
instance = {toml_str(name)}
ack_timeout = "5s"

[processors.partial]
type = "aggregate"
inputs = ["ingest"]
mode = "partial"
window = "2s"
percentiles = [{pct}]

[sinks.partials]
type = "nats"
inputs = ["partial"]
url = {toml_str(self.nats_url)}
subject = "revopipe.partials"
retry_initial = "100ms"
retry_max = "1s"

[sources.global]
type = "nats"
url = {toml_str(self.nats_url)}
subject = "revopipe.partials"
durable = "global"
leader = "global"
leader_ttl = {toml_str(leader_ttl)}
ack_wait = "3s"
instance = {toml_str(name)}
ack_timeout = "5s"

[processors.window]
type = "aggregate"
inputs = ["global"]
window = "2s"
grace = "8s"
watermark = "data"
snapshots = false
percentiles = [{pct}]
{after_window}

[sinks.out]
type = "jsonl"
inputs = [{toml_str(sink_input)}]
path = {toml_str(str(out))}
max_size = "1GiB"
"""
        proc, config = self._proc(name, text)
        agg = Aggregator(name, proc, api_port, out, config)
        self.aggregators.append(agg)
        return agg

    async def start_all(self, deadline: float = 45.0) -> None:
        """Start every revopipe process and wait until each answers /readyz."""
        targets: list[tuple[Proc, int]] = [(a.proc, a.api_port) for a in self.agents]
        targets += [(g.proc, g.api_port) for g in self.aggregators]
        for proc, _ in targets:
            if proc.popen is None:
                proc.start()
        end = time.monotonic() + deadline
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            for proc, port in targets:
                while True:
                    if not proc.alive:
                        raise AssertionError(f"{proc.name} exited at start\n{proc.describe()}")
                    with contextlib.suppress(httpx.HTTPError):
                        r = await http.get(f"http://127.0.0.1:{port}/readyz")
                        if r.status_code == 200:
                            break
                    if time.monotonic() > end:
                        raise AssertionError(
                            f"{proc.name} not ready within {deadline}s\n{proc.describe()}"
                        )
                    await anyio.sleep(0.2)

    async def wait_leader(self, deadline: float, among: Sequence[str] | None = None) -> str:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            who = await self.leader()
            if who is not None and (among is None or who in among):
                return who
            await anyio.sleep(0.2)
        raise AssertionError(
            f"no leader for 'global' among {among or 'any'} within {deadline}s\n" + self.logs()
        )

    def aggregator(self, name: str) -> Aggregator:
        return next(a for a in self.aggregators if a.name == name)

    def logs(self) -> str:
        return "\n".join(p.describe() for p in self.procs)

    async def close(self) -> None:
        for p in reversed(self.procs):
            with contextlib.suppress(Exception):
                p.kill9()


# -- posting --------------------------------------------------------------------------------


async def post_lines(
    http: httpx.AsyncClient, url: str, lines: Iterable[Mapping[str, Any]], deadline: float
) -> None:
    """POST JSON lines until accepted (200). A 503 or a refused connection accepted
    nothing (http source README), so the same body is simply sent again."""
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    end = time.monotonic() + deadline
    last = ""
    while True:
        try:
            r = await http.post(url, content=body, headers={"Content-Type": "application/x-ndjson"})
            if r.status_code == 200:
                return
            if r.status_code != 503:
                raise AssertionError(f"POST {url}: HTTP {r.status_code}: {r.text}")
            last = f"HTTP 503: {r.text}"
        except httpx.ConnectError as exc:
            last = repr(exc)
        if time.monotonic() > end:
            raise AssertionError(f"POST {url} not accepted within {deadline}s: {last}")
        await anyio.sleep(0.2)


def read_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in paths:
        if p.exists():
            with p.open() as f:
                rows.extend(json.loads(line) for line in f if line.strip())
    return rows
