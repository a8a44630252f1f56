"""`revopipe loadtest` as CI uses it, against a real server on loopback: exit status from
thresholds, baselines that flag an injected 2x latency regression and not a rerun of the
same server, and the report file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from revopipe_plugins.loadtest.tests.server import serve
from tests.conftest import run_cli

# 4 s of 4 closed-model users: enough samples for the tests, short enough for CI.
SHORT = ["--type", "custom", "--stage", "1s:4", "--stage", "3s:4"]


def loadtest(tmp_path: Path, url: str, *args: str) -> tuple[int, dict[str, object], str]:
    done = run_cli(
        "loadtest", url, *SHORT, "--data-dir", str(tmp_path), "--json", *args, timeout=120
    )
    out = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, out, done.stderr


def test_thresholds_decide_the_exit_status(tmp_path: Path) -> None:
    with serve(delay=0.01) as server:
        code, out, err = loadtest(
            tmp_path,
            server.url,
            *("--threshold", "p50 < 2s", "--threshold", "error_rate < 1%"),
            *("--watch-pid", str(os.getpid())),  # this process stands in for the server
        )
        assert code == 0, err
        assert set(out["drift"]) == {"latency.p99", "memory_rss"}  # type: ignore[arg-type]
        assert out["requests"] > 0 and all(t["ok"] for t in out["thresholds"])  # type: ignore[attr-defined, union-attr]
        code, out, err = loadtest(tmp_path, server.url, "--threshold", "p50 < 1ms")
    assert code == 1, err
    (failed,) = out["thresholds"]  # type: ignore[misc]
    assert failed["ok"] is False and failed["observed"] >= 0.01
    assert Path(str(out["report"])).read_text().count("data:image/png;base64,") == 1


def test_bad_arguments_exit_2_with_the_fix(tmp_path: Path) -> None:
    done = run_cli("loadtest", "ftp://example", "--users", "2", "--data-dir", str(tmp_path))
    assert done.returncode == 2 and "http://" in done.stderr
    done = run_cli("loadtest", "http://127.0.0.1:9/", "--users", "2", "--threshold", "p99 <")
    assert done.returncode == 2 and "column" in done.stderr


@pytest.mark.slow
def test_baseline_flags_a_2x_regression_and_not_a_rerun(tmp_path: Path) -> None:
    with serve(delay=0.02) as server:
        code, _, err = loadtest(tmp_path, server.url, "--name", "api", "--save-baseline")
        assert code == 0, err
        code, same, err = loadtest(tmp_path, server.url, "--name", "api", "--baseline")
        assert (code, same["verdict"]) == (0, "unchanged"), same
        server.delay = 0.04
        code, slower, err = loadtest(tmp_path, server.url, "--name", "api", "--baseline")
    assert (code, slower["verdict"]) == (1, "regressed"), slower
