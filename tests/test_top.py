"""`revopipe top`: rates from two polls, rendering, finding the instance, and the command
against a real running pipeline."""

from __future__ import annotations

import dataclasses
import fcntl
import http.server
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from revopipe.runtime.api import API_FILE, read_api_file
from revopipe.top import (
    ApiClient,
    Sample,
    Target,
    TopError,
    build_frame,
    frame_to_json,
    locate,
    render,
)
from revopipe.top.client import DEFAULT_URL, normalize_url
from revopipe.top.rates import rate
from revopipe.top.view import fmt_rate, fmt_uptime
from tests.conftest import revopipe_cmd, run_cli

# -- rates -------------------------------------------------------------------------------


def comp(
    name: str, kind: str, events_in: int = 0, events_out: int = 0, **kw: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "type": {"source": "generate", "processor": "tag", "sink": "blackhole"}[kind],
        "health": kw.pop("health", "healthy"),
        "reason": kw.pop("reason", ""),
        "events_in": events_in,
        "events_out": events_out,
        "errors": 0,
        "dropped": 0,
        "retries": 0,
        "restarts": 0,
        "dead_lettered": 0,
        "queue": None if kind == "source" else {"depth": 0, "capacity": 16},
        **kw,
    }


def sample(ts: float, *components: dict[str, Any], pid: int = 42, uptime: float = 3661) -> Sample:
    pipeline = {"name": "demo", "version": "0.1.0", "pid": pid, "uptime_seconds": uptime}
    return Sample(ts, list(components), pipeline)


def test_rate_is_growth_over_seconds_and_unknown_without_a_baseline() -> None:
    assert rate(100, 300, 2.0) == 100.0
    assert rate(5, 5, 1.0) == 0.0
    assert rate(None, 300, 2.0) is None
    assert rate(100, 300, None) is None
    assert rate(100, 300, 0.0) is None
    assert rate(300, 100, 1.0) is None  # a counter going back: the pipeline restarted


def test_frame_uses_the_servers_clock_and_resets_when_the_process_changes() -> None:
    before = sample(10.0, comp("gen", "source", events_out=1000), comp("out", "sink", 900, 0))
    after = sample(12.0, comp("gen", "source", events_out=5000), comp("out", "sink", 4900, 0))
    frame = build_frame(before, after, "http://x")
    rows = {r.name: r for r in frame.rows}
    assert frame.interval == 2.0
    assert rows["gen"].out_rate == 2000.0 and rows["gen"].in_rate is None
    assert rows["out"].in_rate == 2000.0 and rows["out"].out_rate is None
    assert rows["out"].queue == (0, 16)
    assert frame.totals.ingest_rate == 2000.0 and frame.totals.delivered_rate == 2000.0
    assert frame.totals.healthy == 2 and frame.totals.components == 2

    restarted = sample(1.0, comp("gen", "source", events_out=10), pid=43)
    frame = build_frame(after, restarted, "http://x")
    assert frame.interval is None and frame.rows[0].out_rate is None

    # a component absent from the earlier poll has no rate yet
    grown = sample(14.0, *after.components, comp("new", "sink", 7, 0))
    new = next(r for r in build_frame(after, grown, "u").rows if r.name == "new")
    assert new.in_rate is None


def test_formatting() -> None:
    assert [fmt_rate(v) for v in (None, 0, 0.5, 999.94, 1234.0, 2.5e6, 3e9)] == [
        "—",
        "0",
        "0.5",
        "999.9",
        "1.23k",
        "2.50M",
        "3.00G",
    ]
    assert [fmt_uptime(s) for s in (5, 65, 3661, 90061)] == ["5s", "1m05s", "1h01m01s", "1d01h01m"]


def test_render_shows_header_totals_and_one_row_per_component() -> None:
    before = sample(
        0.0,
        comp("gen", "source", events_out=0),
        comp("tagger", "processor", 0, 0),
        comp("out", "sink", 0, 0),
    )
    after = sample(
        2.0,
        comp("gen", "source", events_out=25_000),
        comp("tagger", "processor", 25_000, 25_000, queue={"depth": 16, "capacity": 16}),
        comp("out", "sink", 24_000, 0, dropped=1000, restarts=2, health="degraded", reason="flaky"),
    )
    console = Console(record=True, width=120, color_system=None)
    console.print(render(build_frame(before, after, "http://127.0.0.1:9")))
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0].startswith("revopipe top  demo  v0.1.0  up 1h01m01s  http://127.0.0.1:9")
    assert "rates over 2.0s" in lines[0]
    assert lines[1] == (
        "in 12.50k ev/s  out 12.00k ev/s  errors 0  dropped 1,000  restarts 2  healthy 2/3"
    )
    rows = {line.split()[0]: line.split() for line in lines[3:] if line.strip()}
    header = "component kind type health in/s out/s errors dropped restarts queue"
    assert " ".join(rows["component"]) == header
    # sources first, then processors, then sinks
    assert [line.split()[0] for line in lines[4:7]] == ["gen", "tagger", "out"]
    assert " ".join(rows["gen"]) == "gen source generate healthy — 12.50k 0 0 0 —"
    assert rows["tagger"][4:6] == ["12.50k", "12.50k"] and rows["tagger"][-1] == "16/16"
    assert " ".join(rows["out"]) == "out sink blackhole degraded 12.00k — 0 1,000 2 0/16"
    assert "out: flaky" in text  # why a component is not healthy


def test_first_frame_and_disconnection_render_without_rates() -> None:
    frame = build_frame(None, sample(1.0, comp("gen", "source", events_out=5)), "http://h:1")
    console = Console(record=True, width=100, color_system=None)
    console.print(render(dataclasses.replace(frame, error="refused")))
    text = console.export_text()
    assert "DISCONNECTED: refused" in text
    assert "rates over" not in text
    assert "in — ev/s" in text


def test_json_frame() -> None:
    before = sample(0.0, comp("gen", "source", events_out=0), comp("out", "sink", 0, 0))
    after = sample(0.5, comp("gen", "source", events_out=50), comp("out", "sink", 50, 0))
    data = json.loads(json.dumps(frame_to_json(build_frame(before, after, "u"))))
    assert data["name"] == "demo" and data["interval"] == 0.5
    assert data["totals"]["ingest_rate"] == 100.0
    out = next(c for c in data["components"] if c["name"] == "out")
    assert out["in_rate"] == 100.0 and out["out_rate"] is None
    assert out["queue"] == {"depth": 0, "capacity": 16}


# -- finding the instance ----------------------------------------------------------------


def test_urls_are_normalized() -> None:
    assert normalize_url("127.0.0.1:8686") == "http://127.0.0.1:8686"
    assert normalize_url("http://h:1/") == "http://h:1"
    assert normalize_url("http://h:1/api/v1/") == "http://h:1"
    assert locate(None, "h:2") == Target("http://h:2", "--url")


def write_config(path: Path, data_dir: Path, extra: str = "") -> Path:
    path.write_text(f'[pipeline]\ndata_dir = "{data_dir}"\n{extra}\n[sources.gen]\ntype = "x"\n')
    return path


def test_locate_reads_api_json_named_by_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.toml", tmp_path / "data")
    with pytest.raises(TopError) as info:
        locate(config, None)
    message = str(info.value)
    assert f"no running instance of {config}" in message
    assert str(tmp_path / "data" / API_FILE) in message
    assert "--api 127.0.0.1:0" in message and "--url" in message

    (tmp_path / "data").mkdir()
    record = {"url": "http://127.0.0.1:5/", "pid": os.getpid(), "started": "now"}
    (tmp_path / "data" / API_FILE).write_text(json.dumps(record))
    target = locate(config, None)
    assert target.url == "http://127.0.0.1:5" and target.config == config


def test_a_stale_api_json_is_named_with_its_pid(tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.toml", tmp_path)
    proc = subprocess.Popen(["true"])
    proc.wait()
    (tmp_path / API_FILE).write_text(json.dumps({"url": "http://127.0.0.1:5", "pid": proc.pid}))
    with pytest.raises(TopError, match=f"names pid {proc.pid}, which is not running"):
        locate(config, None)
    (tmp_path / API_FILE).write_text("garbage")
    with pytest.raises(TopError, match=r"is not a revopipe api\.json"):
        locate(config, None)


def test_locate_falls_back_to_a_fixed_configured_address(tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.toml", tmp_path, 'api = "localhost:9123"')
    assert locate(config, None).url == "http://127.0.0.1:9123"


def test_locate_needs_no_secrets_but_an_unset_data_dir_variable_is_named(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text('[pipeline]\ndata_dir = "${TOP_TEST_UNSET_DIR}"\n[sinks.x]\nk="${NOPE}"\n')
    with pytest.raises(TopError, match=r"pipeline\.data_dir: environment variable TOP_TEST_"):
        locate(config, None)
    with pytest.raises(TopError, match="cannot read"):
        locate(tmp_path / "missing.toml", None)


def test_without_config_or_url_the_default_address_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert locate(None, None).url == DEFAULT_URL


@pytest.fixture
def not_revopipe() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"not found")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_another_server_is_not_mistaken_for_revopipe(not_revopipe: str) -> None:
    with ApiClient(Target(not_revopipe, "--url")) as client, pytest.raises(TopError) as info:
        client.sample()
    assert "answered HTTP 404 without a revopipe API body" in str(info.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_top_with_nothing_running_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "p.toml", tmp_path)
    r = run_cli("top", str(config), "--once", "--interval", "100ms")
    assert r.returncode == 1
    assert r.stderr.startswith(f"revopipe top: no running instance of {config}")
    assert "Traceback" not in r.stderr

    url = f"http://127.0.0.1:{free_port()}"
    r = run_cli("top", "--once", "--url", url)
    assert r.returncode == 1
    assert f"cannot reach the revopipe API at {url}: connection refused" in r.stderr
    assert "--api 127.0.0.1:0" in r.stderr

    r = run_cli("top", "--once", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("revopipe top: ")

    r = run_cli("top", "--interval", "soon")
    assert r.returncode == 2 and "expected a duration string" in r.stderr


# -- against a running pipeline ----------------------------------------------------------

PIPELINE = """
[pipeline]
name = "top-test"
data_dir = "{dir}"
[sources.gen]
type = "generate"
batch_size = 20
interval = "5ms"
[processors.tagger]
type = "tag"
inputs = ["gen"]
add = {{ stage = "t" }}
[sinks.hole]
type = "blackhole"
inputs = ["tagger"]
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    tmp = tmp_path_factory.mktemp("top")
    config = tmp / "p.toml"
    config.write_text(PIPELINE.format(dir=tmp))
    proc = subprocess.Popen(
        revopipe_cmd("run", str(config), "--api", "127.0.0.1:0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (record := read_api_file(tmp / API_FILE)) is None:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "api.json did not appear"
            time.sleep(0.05)
        yield config, record["url"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_once_prints_every_component_with_its_rates(pipeline: tuple[Path, str]) -> None:
    config, url = pipeline
    r = run_cli("top", str(config), "--once", "--interval", "500ms")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("revopipe top  top-test  v") and url in lines[0]
    rows = {
        ln.split()[0]: ln.split()
        for ln in lines
        if ln.split()[:1] in (["gen"], ["tagger"], ["hole"])
    }
    assert set(rows) == {"gen", "tagger", "hole"}
    in_rate = {name: row[4] for name, row in rows.items()}
    out_rate = {name: row[5] for name, row in rows.items()}
    assert in_rate["gen"] == "—" and out_rate["hole"] == "—"
    for value in (out_rate["gen"], in_rate["tagger"], out_rate["tagger"], in_rate["hole"]):
        assert value not in ("0", "—"), r.stdout
    assert rows["hole"][3] == "healthy" and rows["hole"][-1].endswith("/16")


@pytest.mark.slow
def test_once_json(pipeline: tuple[Path, str]) -> None:
    _, url = pipeline
    r = run_cli("top", "--url", url, "--once", "--json", "--interval", "300ms")
    assert r.returncode == 0, r.stderr
    frame = json.loads(r.stdout)
    assert frame["name"] == "top-test" and frame["url"] == url
    rates = {c["name"]: c for c in frame["components"]}
    assert rates["gen"]["out_rate"] > 0 and rates["hole"]["in_rate"] > 0
    assert frame["totals"]["ingest_rate"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_live_view_refreshes_and_quits_on_q_or_ctrl_c(
    pipeline: tuple[Path, str], key: bytes
) -> None:
    config, _ = pipeline
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen(
        revopipe_cmd("top", str(config), "--interval", "200ms"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm"},
        # the pty becomes the controlling terminal, so Ctrl-C raises SIGINT as in a shell
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        # a refreshed frame has rates: wait for two frames, i.e. "rates over"
        while b"rates over" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                seen += os.read(leader, 65536)
        assert b"rates over" in seen and b"q or Ctrl-C to quit" in seen
        os.write(leader, key)
        assert proc.wait(timeout=20) == 0
        # the terminal is left as it was found: back on the main screen
        ready, _, _ = select.select([leader], [], [], 1)
        tail = seen + (os.read(leader, 65536) if ready else b"")
        assert tail.rfind(b"\x1b[?1049l") > tail.rfind(b"\x1b[?1049h") >= 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)


@pytest.mark.slow
def test_piped_without_once_prints_a_frame_per_interval(pipeline: tuple[Path, str]) -> None:
    config, _ = pipeline
    proc = subprocess.Popen(
        revopipe_cmd("top", str(config), "--interval", "200ms"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        frames = 0
        deadline = time.monotonic() + 30
        while frames < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            frames += line.startswith(b"revopipe top  top-test")
        assert frames == 2
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0, stderr
        assert b"Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
