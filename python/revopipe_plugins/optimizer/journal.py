"""Recommendations and the action audit trail in SQLite (stdlib, WAL) under data_dir.

`recommendations` holds one row per finding key: first and last seen, the latest evidence,
and whether the last evaluation still found it (`active`). `actions` is append-only: every
dry run, application, verdict and revert of an optimizer action, with the figures measured
before and after, so `revopipe recommendations --actions` can show what changed and why.
Both are readable without the pipeline running (the CLI falls back to the file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revopipe.state import open_sqlite
from revopipe_plugins.optimizer.findings import PRIORITY_ORDER, Finding

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recommendations (
    key TEXT PRIMARY KEY,
    detector TEXT NOT NULL,
    title TEXT NOT NULL,
    action TEXT NOT NULL,
    priority TEXT NOT NULL,
    risk TEXT NOT NULL,
    evidence TEXT NOT NULL,        -- JSON object
    confidence REAL,
    first_seen INTEGER NOT NULL,   -- ns since the epoch
    last_seen INTEGER NOT NULL,
    active INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,           -- ns since the epoch
    change_id INTEGER,             -- the 'applied' row this step belongs to
    step TEXT NOT NULL,            -- dry_run | applied | kept | reverted | failed
    action TEXT NOT NULL,
    component TEXT NOT NULL,
    changes TEXT NOT NULL,         -- JSON: key -> new value
    previous TEXT NOT NULL,        -- JSON: key -> value before
    measure TEXT NOT NULL,
    before REAL,
    after REAL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_at ON actions (at);
"""


@dataclass(frozen=True, slots=True)
class Step:
    """One row of the action audit trail."""

    action: str
    component: str
    step: str
    changes: Mapping[str, float]
    previous: Mapping[str, float]
    measure: str
    reason: str
    before: float | None = None
    after: float | None = None
    change_id: int | None = None


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_sqlite(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def update(self, findings: Iterable[Finding], at_ns: int) -> list[Finding]:
        """Record this evaluation's findings; those not found now become inactive. Returns
        the findings that are new (never seen, or inactive until now)."""
        found = list(findings)
        fresh = []
        with self._db:
            self._db.execute("BEGIN")
            active = {
                k for (k,) in self._db.execute("SELECT key FROM recommendations WHERE active = 1")
            }
            for f in found:
                if f.key not in active:
                    fresh.append(f)
                self._db.execute(
                    """INSERT INTO recommendations VALUES (?,?,?,?,?,?,?,?,?,?,1)
                    ON CONFLICT(key) DO UPDATE SET title=excluded.title,
                      action=excluded.action, priority=excluded.priority, risk=excluded.risk,
                      evidence=excluded.evidence, confidence=excluded.confidence,
                      last_seen=excluded.last_seen,
                      first_seen=CASE WHEN recommendations.active = 1
                        THEN recommendations.first_seen ELSE excluded.first_seen END,
                      active=1""",
                    (
                        f.key,
                        f.detector,
                        f.title,
                        f.action,
                        f.priority,
                        f.risk,
                        json.dumps(dict(f.evidence)),
                        f.confidence,
                        at_ns,
                        at_ns,
                    ),
                )
            gone = active - {f.key for f in found}
            self._db.executemany(
                "UPDATE recommendations SET active = 0 WHERE key = ?", [(k,) for k in gone]
            )
        return fresh

    def recommendations(self, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        """Current recommendations, highest priority first, then most recently found."""
        where = "" if include_inactive else "WHERE active = 1"
        rows = self._db.execute(
            "SELECT key, detector, title, action, priority, risk, evidence, confidence, "
            f"first_seen, last_seen, active FROM recommendations {where}"
        ).fetchall()
        out = [
            {
                "key": r[0],
                "detector": r[1],
                "title": r[2],
                "action": r[3],
                "priority": r[4],
                "risk": r[5],
                "evidence": json.loads(r[6]),
                "confidence": r[7],
                "first_seen": r[8],
                "last_seen": r[9],
                "active": bool(r[10]),
            }
            for r in rows
        ]
        out.sort(key=lambda d: (PRIORITY_ORDER.get(d["priority"], 9), -d["last_seen"]))
        return out

    def record(self, step: Step, at_ns: int) -> int:
        """Append one audit step; returns its id (the change id of an 'applied' step)."""
        with self._db:
            cur = self._db.execute(
                "INSERT INTO actions (at, change_id, step, action, component, changes, "
                "previous, measure, before, after, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    at_ns,
                    step.change_id,
                    step.step,
                    step.action,
                    step.component,
                    json.dumps(dict(step.changes)),
                    json.dumps(dict(step.previous)),
                    step.measure,
                    step.before,
                    step.after,
                    step.reason,
                ),
            )
            return int(cur.lastrowid or 0)

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest audit steps, oldest first."""
        rows = self._db.execute(
            "SELECT id, at, change_id, step, action, component, changes, previous, measure, "
            "before, after, reason FROM actions ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "id": r[0],
                "at": r[1],
                "change_id": r[2],
                "step": r[3],
                "action": r[4],
                "component": r[5],
                "changes": json.loads(r[6]),
                "previous": json.loads(r[7]),
                "measure": r[8],
                "before": r[9],
                "after": r[10],
                "reason": r[11],
            }
            for r in reversed(rows)
        ]
