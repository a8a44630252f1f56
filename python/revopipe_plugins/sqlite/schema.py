"""The history database's schema, its version check, and how connections are opened.

Tables (version 1):

- `series`: one row per (name, tags); tags are canonical JSON (keys sorted, compact), so
  the same tag set is always the same text. `kind` is the revopipe MetricKind code of the
  first sighting, `unit` its unit. `last_ts` is the newest point's time (where a
  restarted writer resumes), `base_ts`/`base_value` the newest finite value (what
  `latest` shows, and where a counter's increases resume), `last_snapshot_ns` the newest
  histogram snapshot's start. Retention forgets a series once all of these are older
  than everything it keeps.
- `points`: raw values in a WITHOUT ROWID table clustered by (minute bucket, series,
  time): a batch of many series appends to a few pages of the current minute instead of
  one page per series, so a commit writes little; a series' range is read with one seek
  per minute; retention deletes whole minutes. `seq` tells apart points of one series
  sharing a timestamp (0 unless they do). About 25 bytes per point.
- `rollups`: per tier (`window_ns`), epoch-aligned window and series (time-major for the
  same reason): count, sum, min, max of the finite values, the value with the latest
  timestamp (`last`, `last_ts`) and, for counters (cumulative totals), the `increase`
  over the window, resets handled.
- `histograms` / `hist_rollups`: `HistogramSnapshot`s raw, and merged per tier window
  (HdrHistogram V2, compressed, stored as bytes), so any range's percentiles are exact.
- `events`: every other event (span, alert, health, ...) as JSON with its type and time.
- `tiers`, `meta`: what the writer was configured with (tiers and retention, HDR
  precision, bucket width), so a reader needs no pipeline config.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1
BUCKET_NS = 60_000_000_000
"""Raw points are clustered by minute: `bucket = ts_ns // BUCKET_NS`."""

DDL = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE tiers (
    window_ns INTEGER PRIMARY KEY,
    retention_ns INTEGER NOT NULL
);
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    tags TEXT NOT NULL,
    kind INTEGER NOT NULL,
    unit TEXT NOT NULL,
    last_ts INTEGER,
    base_ts INTEGER,
    base_value REAL,
    last_snapshot_ns INTEGER,
    UNIQUE (name, tags)
);
CREATE TABLE points (
    bucket INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (bucket, series_id, ts_ns, seq)
) WITHOUT ROWID;
CREATE TABLE rollups (
    window_ns INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    last REAL NOT NULL,
    last_ts INTEGER NOT NULL,
    increase REAL,
    PRIMARY KEY (window_ns, start_ns, series_id)
) WITHOUT ROWID;
CREATE TABLE histograms (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL,
    min REAL,
    max REAL,
    resolution REAL NOT NULL,
    hdr BLOB NOT NULL,
    exemplars TEXT
);
CREATE INDEX histograms_by_series ON histograms (series_id, start_ns);
CREATE INDEX histograms_by_time ON histograms (start_ns);
CREATE TABLE hist_rollups (
    window_ns INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    series_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    hdr BLOB NOT NULL,
    PRIMARY KEY (window_ns, start_ns, series_id)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (ts_ns);
CREATE INDEX events_by_type ON events (type, ts_ns);
"""


class HistoryError(Exception):
    """The history database cannot be used (missing, foreign, or of another version)."""


def _check_version(conn: sqlite3.Connection, path: Path) -> bool:
    """True if the schema is there, False for an empty database; raises otherwise."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return True
    if version == 0:
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if tables == 0:
            return False
        raise HistoryError(
            f"{path} is an SQLite database but not a revopipe history (it has tables and no "
            "schema version); point the sqlite sink's `path` at another file"
        )
    raise HistoryError(
        f"{path} has history schema version {version}; this revopipe reads version "
        f"{SCHEMA_VERSION}. Use the revopipe release that wrote it, or point the sqlite "
        "sink's `path` at a new file"
    )


def open_writer(path: Path, busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """A read-write connection, creating the database and its schema if needed.

    Autocommit mode (isolation_level=None): the store issues BEGIN IMMEDIATE / COMMIT
    itself, so a transaction is exactly one batch. `check_same_thread=False` because the
    sink reaches it from anyio's worker threads; the store serializes every use.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA user_version").fetchone()
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(
            f"cannot open the history database {path}: {exc}; check that the pipeline's "
            "data_dir is writable"
        ) from None
    try:
        exists = _check_version(conn, path)
        if not exists:
            # Must precede the first table: auto_vacuum cannot be switched on later
            # without a full VACUUM. INCREMENTAL lets retention hand freed pages back
            # to the file system in small steps (`PRAGMA incremental_vacuum`).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        # With WAL, NORMAL skips the fsync at each commit but not the ordering: a commit
        # is in the WAL before COMMIT returns, so a killed process (kill -9) loses
        # nothing committed, and power loss can only roll back the last commits, never
        # corrupt the database. FULL would fsync every batch for little gain here.
        conn.execute("PRAGMA synchronous = NORMAL")
        if not exists:
            conn.execute("BEGIN IMMEDIATE")
            # Another process may have created it between the check and the lock.
            if not _check_version(conn, path):
                # One statement at a time: executescript() would commit first.
                for statement in DDL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection; safe next to a running writer (WAL readers see the last
    committed state and never block it)."""
    if not path.exists():
        raise HistoryError(
            f"no history database at {path}; run the pipeline with its sqlite sink first"
        )
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        if not _check_version(conn, path):
            raise HistoryError(f"{path} is empty: the sqlite sink has not created it yet")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise HistoryError(f"{path} is not a readable SQLite database: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn
