"""SQLite files under a pipeline's data_dir: the embedded store for alert state, outboxes,
baselines, recommendations and history. No server; WAL so a reader (a CLI, the API)
never blocks the writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal


def open_sqlite(
    path: str | Path,
    schema: str,
    *,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
) -> sqlite3.Connection:
    """A connection to `path` with `schema` (idempotent DDL) applied: WAL journal, a 5 s busy
    timeout, autocommit mode (open transactions explicitly with BEGIN or `with conn:`), and
    usable from any thread, since its owner serialises access. `synchronous="FULL"` for
    rows that must survive power loss, not only a killed process."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db
