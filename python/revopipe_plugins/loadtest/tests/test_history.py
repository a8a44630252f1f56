"""The run history: runs recorded in the load-test SQLite file (bounded per name), change
points across runs found at the right run and not in noise, and `revopipe loadtest` /
`revopipe loadtest-history` against a real server on loopback."""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revopipe_plugins.loadtest.baseline import BaselineStore
from revopipe_plugins.loadtest.history import (
    DEFAULT_MIN_RUNS,
    HistoryError,
    RecordedRun,
    RunHistory,
    analyse,
)
from revopipe_plugins.loadtest.tests.server import serve
from tests.conftest import run_cli

T0 = 1_790_000_000.0  # 2026-09-21, an hour between synthetic runs


def summary(
    p95: float, rps: float = 1000.0, errors: int = 0, interval: float = 5.0
) -> dict[str, Any]:
    """A generator summary as `LoadRun.summary()` returns it, with the fields history reads."""
    requests = round(rps * interval)
    return {
        "t": interval,
        "interval": interval,
        "requests": requests,
        "ok": requests - errors,
        "errors": {"connect": 0, "timeout": 0, "status": errors, "read": 0},
        "latency": {
            "min": p95 / 10,
            "mean": p95 / 2,
            "p50": p95 / 2,
            "p90": p95 * 0.9,
            "p95": p95,
            "p99": p95 * 1.5,
            "p99_9": p95 * 2,
            "max": p95 * 3,
        },
        "status": {"200": requests - errors},
        "latency_hdr": b"not stored in the history",
    }


def record_series(
    store: RunHistory,
    name: str,
    p95s: list[float],
    rps: list[float] | None = None,
    test: str = "load",
) -> list[RecordedRun]:
    return [
        store.record(
            name,
            summary(p, rps[i] if rps else 1000.0),
            started=T0 + 3600 * i,
            test=test,
            model="closed",
        )
        for i, p in enumerate(p95s)
    ]


def noisy(rng: random.Random, level: float, n: int, sd: float = 0.05) -> list[float]:
    return [level * (1 + rng.gauss(0, sd)) for _ in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunHistory]:
    with RunHistory.for_data_dir(tmp_path) as history:
        yield history


@pytest.mark.parametrize("seed", range(5))
def test_a_p95_shift_after_run_12_of_24_is_found_at_that_run(store: RunHistory, seed: int) -> None:
    rng = random.Random(seed)
    p95 = noisy(rng, 0.010, 12) + noisy(rng, 0.014, 12)  # +40 % from run #13 on
    record_series(store, "api", p95, rps=noisy(rng, 1000.0, 24, 0.03))
    analysis = analyse(store.runs("api"))
    assert analysis.ran and analysis.runs == 24
    (shift,) = analysis.shifts  # throughput and errors did not move
    assert shift.metric == "p95" and abs(shift.run.seq - 13) <= 1
    assert shift.direction == "regression" and shift.is_regression
    assert shift.p_value <= 0.01 / 3  # each of the 3 metrics is tested at pvalue / 3
    assert shift.mean_before == pytest.approx(0.010, rel=0.1)
    assert shift.mean_after == pytest.approx(0.014, rel=0.1)
    assert shift.recent and analysis.regressions == [shift]
    assert shift.since[0] == shift.run and shift.since[-1].seq == 24
    text = shift.text()
    assert text.startswith("p95 latency shifted +") and f"at run #{shift.run.seq} (" in text
    assert "p=" in text and f"runs since: #{shift.run.seq}" in text


@pytest.mark.parametrize("seed", range(5))
def test_24_noise_runs_get_no_change_point(store: RunHistory, seed: int) -> None:
    rng = random.Random(100 + seed)
    record_series(store, "api", noisy(rng, 0.010, 24), rps=noisy(rng, 1000.0, 24, 0.03))
    analysis = analyse(store.runs("api"))
    assert analysis.ran and analysis.shifts == () and not analysis.regressions
    assert analysis.to_json()["regression"] is False


def test_fewer_runs_than_the_minimum_say_how_many_more(store: RunHistory) -> None:
    record_series(store, "api", [0.01] * 7)
    analysis = analyse(store.runs("api"))
    assert not analysis.ran and analysis.shifts == ()
    assert analysis.message is not None
    assert f"needs {DEFAULT_MIN_RUNS} runs" in analysis.message
    assert "7 load/closed run(s) recorded" in analysis.message and "3 more" in analysis.message
    assert analyse([]).message is not None


def test_throughput_down_and_errors_up_are_regressions(store: RunHistory) -> None:
    rng = random.Random(7)
    rps = noisy(rng, 1000.0, 14, 0.02) + noisy(rng, 600.0, 6, 0.02)
    runs = record_series(store, "api", noisy(rng, 0.010, 20), rps=rps)
    (shift,) = analyse(runs).shifts
    assert (shift.metric, shift.run.seq, shift.direction) == ("rps", 15, "regression")
    assert shift.magnitude == pytest.approx(-0.4, abs=0.05)

    for i in range(14):
        store.record("err", summary(0.01, errors=0), started=T0 + i)
    for i in range(6):
        store.record("err", summary(0.01, errors=50), started=T0 + 14 + i)
    (shift,) = analyse(store.runs("err"), ["errors"]).shifts
    assert (shift.run.seq, shift.direction) == (15, "regression")
    assert math.isinf(shift.magnitude) and shift.to_json()["magnitude"] is None


def test_only_runs_of_the_latest_type_and_model_form_the_series(store: RunHistory) -> None:
    # a slower smoke test under the same name is another experiment, not a regression
    rng = random.Random(3)
    record_series(store, "api", noisy(rng, 0.010, 12), test="load")
    record_series(store, "api", noisy(rng, 0.030, 12), test="smoke")
    analysis = analyse(store.runs("api"))
    assert analysis.runs == 12 and analysis.shifts == ()


def test_runs_are_recorded_numbered_and_bounded(tmp_path: Path) -> None:
    with RunHistory.for_data_dir(tmp_path, keep=5) as store:
        for i in range(8):
            store.record("api", summary(0.010 + i / 1000), started=T0 + i, test="load")
        store.record("other", summary(0.5, errors=5), test="smoke", model="open")
        empty = summary(0.0)
        empty.update(requests=0, ok=0, interval=0.0)
        none = store.record("idle", empty)
        runs = store.runs("api")
        assert [r.seq for r in runs] == [4, 5, 6, 7, 8]  # seq keeps counting past dropped runs
        assert [r.seq for r in store.runs("api", last=2)] == [7, 8]
        assert store.names() == {"api": 5, "idle": 1, "other": 1}
    run = runs[-1]
    assert run.p95 == pytest.approx(0.017) and run.p99 == pytest.approx(0.017 * 1.5)
    assert run.rps == pytest.approx(1000.0) and run.duration == 5.0 and run.started == T0 + 7
    assert (run.requests, run.errors, run.error_rate, run.test) == (5000, 0, 0.0, "load")
    assert "latency_hdr" not in run.summary and run.summary["latency"]["p95"] == run.p95
    assert none.p95 is None and none.error_rate is None and none.rps == 0.0
    # the same file as the baselines, which still opens and works beside the runs table
    db = tmp_path / "loadtest" / "baselines.db"
    with BaselineStore.for_data_dir(tmp_path) as baselines:
        assert baselines.path == db and baselines.list() == []
    with RunHistory(db) as again:
        (other,) = again.runs("other")
    assert (other.model, other.errors) == ("open", 5)
    assert other.error_rate == pytest.approx(0.001)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_file_that_is_no_database_names_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "loadtest" / "baselines.db"
    db.parent.mkdir()
    db.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(HistoryError, match=r"not a load-test database.*--data-dir"):
        RunHistory(db)
    with (
        RunHistory.for_data_dir(tmp_path / "ok") as store,
        pytest.raises(HistoryError, match="non-empty name"),
    ):
        store.record(" ", summary(0.01))
    with pytest.raises(ValueError, match="choose from"):
        analyse([], ["p42"])


@pytest.mark.slow
def test_loadtest_records_runs_and_flags_a_slower_server(tmp_path: Path) -> None:
    # 20 earlier runs against a fast server, recorded through the API; then 3 real runs of
    # a server 30 ms slower: p95 and throughput shift at the first real run (#21)
    rng = random.Random(11)
    with RunHistory.for_data_dir(tmp_path) as store:
        for i in range(20):
            fast = summary(0.002 * (1 + rng.gauss(0, 0.05)), rps=1500 * (1 + rng.gauss(0, 0.03)))
            store.record("api", fast, started=T0 + 60 * i, test="custom", model="closed")
    args = ["--type", "custom", "--stage", "500ms:2", "--name", "api", "--no-report", "--json"]
    outs = []
    with serve(delay=0.03) as server:
        for flag in ([], [], ["--fail-on-history-regression"]):
            done = run_cli(
                "loadtest", server.url, *args, "--data-dir", str(tmp_path), *flag, timeout=120
            )
            outs.append((done.returncode, json.loads(done.stdout), done.stderr))
    assert [code for code, _, _ in outs[:2]] == [0, 0], outs
    code, out, err = outs[2]
    assert code == 1, err  # only the flag turns the history's regression into a failure
    history = out["history"]
    assert history["runs"] == 23 and history["regression"] is True
    shifts = {c["metric"]: c for c in history["change_points"]}
    assert shifts["p95"]["run"] == 21 and shifts["p95"]["direction"] == "regression"
    assert shifts["p95"]["runs_since"] == [21, 22, 23] and shifts["p95"]["recent"]
    assert shifts["rps"]["direction"] == "regression"
    assert any(t.startswith("p95 latency shifted +") for t in history["recent"])

    done = run_cli("loadtest-history", "api", "--data-dir", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    runs = listed["runs"]
    assert [r["seq"] for r in runs] == list(range(1, 24))
    real = runs[20:]
    assert all(r["requests"] > 0 and r["p95"] >= 0.03 and r["errors"] == 0 for r in real)
    assert all(r["test"] == "custom" and r["model"] == "closed" for r in real)
    assert [c["run"] for c in listed["analysis"]["change_points"] if c["metric"] == "p95"] == [21]
    done = run_cli("loadtest-history", "api", "--data-dir", str(tmp_path), "--last", "5")
    assert done.returncode == 0 and "p95 latency shifted" in done.stdout, done.stderr
