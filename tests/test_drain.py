"""SIGTERM (and SIGINT) mid-run: sources stop, in-flight batches flow through, sinks flush;
every event a source emitted reaches the JSONL sink, and the process exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import read_jsonl, revopipe_cmd

CONFIG = """
[pipeline]
data_dir = "{dir}"
[sources.gen]
type = "generate"
batch_size = 50
interval = "1ms"
[processors.slow_down]
type = "tag"
inputs = ["gen"]
add = {{ stage = "tagged" }}
buffer = 4
[sinks.file]
type = "jsonl"
inputs = ["slow_down"]
path = "out.jsonl"
max_size = "256KiB"
max_files = 1000
[sinks.second]
type = "jsonl"
inputs = ["gen"]
path = "direct.jsonl"
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_everything_and_exits_zero(tmp_path: Path, signum: int) -> None:
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.format(dir=tmp_path))
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        revopipe_cmd("run", str(config), "--stats-file", str(stats_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait until events are flowing, then interrupt mid-stream
    deadline = time.monotonic() + 30
    out = tmp_path / "out.jsonl"
    while time.monotonic() < deadline and not (tmp_path / "out.jsonl.2").exists():
        time.sleep(0.05)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "draining" in stderr

    stats = {s["name"]: s for s in json.loads(stats_file.read_text())}
    emitted = stats["gen"]["events_out"]
    assert emitted > 1000
    # the rotated files plus the live one hold every event exactly once, in order
    files = [*sorted(tmp_path.glob("out.jsonl.*"), key=lambda p: -int(p.suffix[1:])), out]
    assert len(files) > 1, "rotation should have happened"
    rows = [r for f in files for r in read_jsonl(f)]
    assert [r["value"] for r in rows] == [float(i) for i in range(emitted)]
    assert all(r["tags"]["stage"] == "tagged" for r in rows)
    direct = read_jsonl(tmp_path / "direct.jsonl")
    assert len(direct) == emitted
    for s in stats.values():
        assert s["errors"] == 0 and s["dropped"] == 0


def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    # the sink cannot start (its path is a directory), so the drain would wait for it
    # until drain_timeout; a second signal must not wait that long
    config.write_text(f"""
[pipeline]
data_dir = "{tmp_path}"
drain_timeout = "10m"
restart_backoff = "100ms"
max_restart_backoff = "200ms"
[sources.gen]
type = "generate"
interval = "10ms"
[sinks.file]
type = "jsonl"
inputs = ["gen"]
path = "{tmp_path}"
""")
    proc = subprocess.Popen(
        revopipe_cmd("run", str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The sink's start failure is logged once the pipeline runs, and so once the signal
    # handlers are in place (a fixed sleep was not enough on a loaded machine).
    lines: list[str] = []
    failed = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "IsADirectoryError" in line:
                failed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert failed.wait(60), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None, "the first signal only starts a drain"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    reader.join(10)
    stderr = "".join(lines)
    assert proc.returncode == 1
    assert "second signal: stopping now" in stderr
    assert "IsADirectoryError" in stderr
