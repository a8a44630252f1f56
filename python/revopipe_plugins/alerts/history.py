"""Alert audit trail and current state in SQLite (stdlib, WAL).

Every transition and acknowledgement is appended to `alert_history`; the current alerts of
each rule (pending timers, firing alerts with their ack and escalation progress) live in
`alert_state`, replaced in the same transaction, so a restart resumes exactly where the
last committed step left off.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revopipe.events import Tags
from revopipe.state import open_sqlite
from revopipe_plugins.alerts.lifecycle import Acknowledged, Alert, Event, State, Transition

__all__ = ["History", "HistoryEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,            -- 'transition' or 'ack'
    rule TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    labels TEXT NOT NULL,          -- JSON object
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    value REAL,
    at INTEGER NOT NULL,           -- ns since the epoch
    by TEXT
);
CREATE INDEX IF NOT EXISTS alert_history_rule_at ON alert_history (rule, at);
CREATE INDEX IF NOT EXISTS alert_history_fp_at ON alert_history (fingerprint, at);
CREATE TABLE IF NOT EXISTS alert_state (
    rule TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,           -- JSON of lifecycle.Alert
    PRIMARY KEY (rule, fingerprint)
);
"""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    id: int
    kind: str
    rule: str
    fingerprint: str
    labels: dict[str, str]
    from_state: State
    to_state: State
    value: float | None
    at: int
    by: str | None


class History:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # autocommit mode: transactions are opened explicitly in `record`
        self._db = open_sqlite(self.path, _SCHEMA)
        # one connection shared by the evaluation loop and CLI/API readers
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(
        self, events: Iterable[Event], rule: str | None = None, alerts: Iterable[Alert] = ()
    ) -> None:
        """Append the transitions and acks among `events`; when `rule` is given, its
        persisted state becomes `alerts` (the lifecycle's current alerts). One transaction."""
        rows: list[tuple[Any, ...]] = []
        for e in events:
            if isinstance(e, Transition):
                rows.append(_row("transition", e, e.from_state, e.to_state, None))
            elif isinstance(e, Acknowledged):
                rows.append(_row("ack", e, e.state, e.state, e.by))
        with self._lock:
            self._write(rows, rule, alerts)

    def _write(
        self, rows: list[tuple[Any, ...]], rule: str | None, alerts: Iterable[Alert]
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO alert_history (kind, rule, fingerprint, labels, from_state,"
                " to_state, value, at, by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if rule is not None:
                db.execute("DELETE FROM alert_state WHERE rule = ?", (rule,))
                db.executemany(
                    "INSERT INTO alert_state (rule, fingerprint, state) VALUES (?, ?, ?)",
                    [(rule, a.fingerprint, json.dumps(a.to_json())) for a in alerts],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def load(self, rule: str) -> list[Alert]:
        """The persisted alerts of `rule`, for `RuleLifecycle.restore`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state FROM alert_state WHERE rule = ? ORDER BY fingerprint", (rule,)
            ).fetchall()
        return [Alert.from_json(json.loads(s)) for (s,) in rows]

    def query(
        self,
        rule: str | None = None,
        fingerprint: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 100,
    ) -> list[HistoryEntry]:
        """Entries matching every filter given (`since` inclusive, `until` exclusive, in ns),
        newest last; the latest `limit` of them."""
        where: list[str] = []
        args: list[object] = []
        for column, op, value in (
            ("rule", "=", rule),
            ("fingerprint", "=", fingerprint),
            ("at", ">=", since),
            ("at", "<", until),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        sql = "SELECT id, kind, rule, fingerprint, labels, from_state, to_state, value, at, by"
        sql += " FROM alert_history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        out = [
            HistoryEntry(
                id=r[0],
                kind=r[1],
                rule=r[2],
                fingerprint=r[3],
                labels=json.loads(r[4]),
                from_state=State(r[5]),
                to_state=State(r[6]),
                value=r[7],
                at=r[8],
                by=r[9],
            )
            for r in rows
        ]
        out.reverse()
        return out


def _row(
    kind: str, e: Transition | Acknowledged, old: State, new: State, by: str | None
) -> tuple[str, str, str, str, str, str, float, int, str | None]:
    return (kind, e.rule, e.fingerprint, _labels(e.labels), old.value, new.value, e.value, e.at, by)


def _labels(labels: Tags) -> str:
    return json.dumps(dict(labels), ensure_ascii=False, sort_keys=True)
