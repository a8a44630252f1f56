"""The sink in real pipelines: every event of a finite run is stored exactly once, and a
`revopipe run` killed with SIGKILL mid-run leaves an intact database holding every
committed batch, onto which a restarted pipeline keeps appending."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from revopipe import Pipeline
from tests.conftest import revopipe_cmd

NAME = "revopipe.generate.sequence"


def read(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def values(db: Path) -> list[float]:
    return [
        float(v)  # type: ignore[arg-type]
        for (v,) in read(db, "SELECT value FROM points ORDER BY ts_ns, seq")
    ]


@pytest.mark.anyio
async def test_a_finite_run_stores_every_event_once(tmp_path: Path) -> None:
    pipeline = Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"gen": {"type": "generate", "count": 2500, "interval": "0s"}},
            "sinks": {"history": {"type": "sqlite", "inputs": ["gen"]}},
        }
    )
    await pipeline.run()
    db = tmp_path / "history.db"
    assert values(db) == [float(i) for i in range(2500)]
    assert read(db, "SELECT sum(count) FROM rollups GROUP BY window_ns") == [(2500,), (2500,)]
    assert read(db, "PRAGMA integrity_check") == [("ok",)]


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            revopipe_cmd("run", str(config), "--log-level", "warning"),
            stdout=out,
            stderr=out,
        )


def wait_for_rows(db: Path, at_least: int, proc: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if db.exists():
            try:
                (n,) = read(db, "SELECT count(*) FROM points")[0]
            except sqlite3.OperationalError:
                n = 0  # the schema is being created
            assert isinstance(n, int)
            if n >= at_least:
                return n
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} rows after 60 s:\n{log.read_text()}")


@pytest.mark.slow
def test_kill_9_mid_run_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f"""
[pipeline]
data_dir = "{data}"

[sources.gen]
type = "generate"
batch_size = 100
interval = "2ms"

[sinks.history]
type = "sqlite"
inputs = ["gen"]
"""
    )
    db = data / "history.db"
    log = tmp_path / "run.log"

    proc = start(config, log)
    try:
        wait_for_rows(db, 3000, proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    # The database opens (the WAL is replayed), is intact, and holds a gap-free prefix of
    # the sequence made of whole batches: every committed batch, nothing half-written.
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    before = values(db)
    n = len(before)
    assert n >= 3000 and n % 100 == 0
    assert before == [float(i) for i in range(n)]
    # rollups were committed with their batch, never without it
    assert read(db, "SELECT sum(count) FROM rollups GROUP BY window_ns") == [(n,), (n,)]
    (last_ts,) = read(db, "SELECT max(ts_ns) FROM points")[0]

    # Restart on the same data_dir: it appends (generate starts again from 0) and the
    # history before the kill is untouched.
    proc = start(config, log)
    try:
        wait_for_rows(db, n + 1000, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    after = values(db)
    m = len(after) - n
    assert after[:n] == before
    assert after[n:] == [float(i) for i in range(m)]
    assert read(db, f"SELECT count(*) FROM points WHERE ts_ns <= {last_ts}") == [(n,)]
    assert read(db, "PRAGMA integrity_check") == [("ok",)]
    assert read(db, "SELECT sum(count) FROM rollups GROUP BY window_ns") == [
        (n + m,),
        (n + m,),
    ]
    # the restart looks like a counter reset: the 1h increase counts both runs
    (inc,) = read(db, "SELECT sum(increase) FROM rollups WHERE window_ns = 3600000000000")[0]
    assert inc == (n - 1) + (m - 1)
    assert not os.path.exists(str(db) + "-journal")
