"""`revopipe profile` when things go wrong: crashes, signals, bad arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revopipe_plugins.profiler.bootstrap import ENV_CHECKPOINT
from revopipe_plugins.profiler.export import parse_collapsed
from revopipe_plugins.profiler.tests.clirun import TIMEOUT, WORKLOAD, profile_cmd, run

pytestmark = pytest.mark.slow


def test_crashing_child_exit_code_and_profile(tmp_path: Path) -> None:
    out = tmp_path / "crash.json"
    proc = run(
        profile_cmd("-o", str(out), "--", sys.executable, str(WORKLOAD), "1", "--crash"), tmp_path
    )
    assert proc.returncode == 1
    assert "workload crashed on purpose" in proc.stderr  # the child's stderr passes through
    doc = json.loads(out.read_text())
    frames = {(f["name"], f.get("file")) for f in doc["shared"]["frames"]}
    assert ("__main__:hot", str(WORKLOAD)) in frames
    assert "exited with status 1" in proc.stderr


def test_exit_code_passes_through_and_stdout_is_the_childs(tmp_path: Path) -> None:
    proc = run(
        profile_cmd("--", sys.executable, "-c", "print('hello from child'); raise SystemExit(7)"),
        tmp_path,
    )
    assert proc.returncode == 7
    assert proc.stdout == "hello from child\n"  # the report goes to stderr
    assert (tmp_path / "profile.speedscope.json").exists()  # the default output


def test_child_killed_hard_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    # os._exit skips atexit: what was sampled until the last checkpoint remains
    code = (
        "import os, time\n"
        "def burn():\n"
        "    end = time.monotonic() + 1\n"
        "    while time.monotonic() < end: pass\n"
        "burn(); os._exit(9)\n"
    )
    out = tmp_path / "hard.txt"
    env = {**os.environ, ENV_CHECKPOINT: "0.2"}
    proc = run(profile_cmd("-o", str(out), "--", sys.executable, "-c", code), tmp_path, env)
    assert proc.returncode == 9
    assert any(s.endswith(":burn") or ":burn:" in s for s in parse_collapsed(out.read_text()))


def test_ctrl_c_stops_the_child_and_still_writes(tmp_path: Path) -> None:
    out = tmp_path / "int.txt"
    # a session of its own, so the test can signal the group as a terminal's Ctrl-C does
    proc = subprocess.Popen(
        profile_cmd("-o", str(out), "--", sys.executable, str(WORKLOAD), "--wait-for-signal"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(1.0)  # let it burn long enough to be sampled
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, err  # the child died of the SIGINT
    assert "KeyboardInterrupt" in err
    assert parse_collapsed(out.read_text())


def test_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(profile_cmd(), tmp_path)
    assert proc.returncode == 2
    assert "no command given" in proc.stderr and "--" in proc.stderr


def test_bad_rate_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(profile_cmd("--rate", "0", "--", sys.executable, "-c", "pass"), tmp_path)
    assert proc.returncode == 2
    assert "--rate" in proc.stderr


def test_isolated_python_is_reported_not_profiled(tmp_path: Path) -> None:
    proc = run(profile_cmd("--", sys.executable, "-I", "-c", "pass"), tmp_path)
    assert proc.returncode == 0
    assert "no Python process reported a profile" in proc.stderr
