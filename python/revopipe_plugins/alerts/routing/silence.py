"""Silences: matchers plus a time range during which matching alerts are not sent, kept in
SQLite so they survive a restart. Times are Unix nanoseconds, passed in by the caller.

The active silences are cached in memory (`muted_by` runs for every alert of every flush)
and re-read when the database changes, also when another process (the CLI) wrote it:
SQLite's `data_version` tells.
"""

from __future__ import annotations

import builtins
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from revopipe.state import open_sqlite
from revopipe_plugins.alerts.routing.matchers import Matcher, matches_all, parse_matchers

__all__ = ["Silence", "SilenceStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,     -- JSON list of matcher strings
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_silences_ends ON alert_silences (ends_at);
"""


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: int
    ends_at: int
    created_by: str
    comment: str
    created_at: int
    updated_at: int

    def active(self, now: int) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: int) -> str:
        """pending (starts later), active or expired — as `alerts list` shows it."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.matchers, labels)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _matchers(given: Sequence[str | Matcher]) -> tuple[Matcher, ...]:
    out: list[Matcher] = []
    for m in given:
        out.extend([m] if isinstance(m, Matcher) else parse_matchers(m))
    return tuple(out)


class SilenceStore:
    """Silences in the table `alert_silences` of the SQLite file `path` (WAL; the file may
    be shared with other tables). Thread-safe; every method is a short local transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path, _SCHEMA)
        self._version = -1
        self._cache: list[Silence] = []  # not yet expired at the last load

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SilenceStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- changes ------------------------------------------------------------------------

    def add(
        self,
        matchers: Sequence[str | Matcher],
        *,
        starts_at: int,
        ends_at: int,
        created_by: str,
        comment: str = "",
        now: int | None = None,
        id: str | None = None,
    ) -> Silence:
        """Store a new silence (or replace silence `id`) and return it. `matchers` are
        matcher strings (`'host="web-1"'`, `'{a="b", c=~"d"}'`) or parsed matchers.

        Raises ValueError for bad matchers, no matchers (that would mute everything), an
        empty creator, or ends_at not after starts_at."""
        parsed = _matchers(matchers)
        if not parsed:
            raise ValueError(
                "silence: at least one matcher is required (a silence without matchers would "
                'mute every alert); e.g. alertname="high_cpu_usage"'
            )
        if ends_at <= starts_at:
            raise ValueError(
                f"silence: ends_at ({ends_at}) must be after starts_at ({starts_at}); "
                "give a positive duration"
            )
        if not created_by.strip():
            raise ValueError("silence: created_by must name who creates it (e.g. a user name)")
        if parsed and all(m.matches({}) for m in parsed):
            # Every matcher also matches an alert with no labels at all (`a=""`, `a=~".*"`):
            # such a silence mutes nearly everything, which is almost surely a typo.
            raise ValueError(
                "silence: the matchers "
                + ", ".join(str(m) for m in parsed)
                + " match alerts without any labels, so they would mute nearly everything; "
                'add a matcher that needs a label, e.g. alertname="high_cpu_usage"'
            )
        stamp = starts_at if now is None else now
        sid = id or str(uuid.uuid4())
        silence = Silence(sid, parsed, starts_at, ends_at, created_by, comment, stamp, stamp)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO alert_silences (id, matchers, starts_at, ends_at,"
                " created_by, comment, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sid,
                    json.dumps([str(m) for m in parsed]),
                    starts_at,
                    ends_at,
                    created_by,
                    comment,
                    stamp,
                    stamp,
                ),
            )
            self._version = -1
        return silence

    def expire(self, id: str, now: int) -> Silence:
        """End silence `id` at `now` (a pending one ends before it starts). Expiring an
        expired silence changes nothing. Raises LookupError for an unknown id."""
        with self._lock:
            row = self._db.execute("SELECT * FROM alert_silences WHERE id = ?", (id,)).fetchone()
            if row is None:
                raise LookupError(
                    f"silence {id!r} does not exist; list silences to see the ids "
                    "(`revopipe alerts silence --list`)"
                )
            current = _row(row)
            if current.ends_at <= now:
                return current
            starts = min(current.starts_at, now)
            self._db.execute(
                "UPDATE alert_silences SET starts_at = ?, ends_at = ?, updated_at = ? WHERE id = ?",
                (starts, now, now, id),
            )
            self._version = -1
            return Silence(
                current.id,
                current.matchers,
                starts,
                now,
                current.created_by,
                current.comment,
                current.created_at,
                now,
            )

    def purge(self, before: int) -> int:
        """Delete silences that ended before `before`; returns how many."""
        with self._lock:
            cur = self._db.execute("DELETE FROM alert_silences WHERE ends_at < ?", (before,))
            self._version = -1
            return cur.rowcount

    # --- reading ------------------------------------------------------------------------

    def get(self, id: str) -> Silence | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alert_silences WHERE id = ?", (id,)).fetchone()
        return None if row is None else _row(row)

    def list(self, include_expired: bool, now: int) -> builtins.list[Silence]:
        """Pending and active silences (and expired ones when asked), by start time."""
        with self._lock:
            if include_expired:
                rows = self._db.execute("SELECT * FROM alert_silences").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM alert_silences WHERE ends_at > ?", (now,)
                ).fetchall()
        return sorted((_row(r) for r in rows), key=lambda s: (s.starts_at, s.id))

    def active(self, now: int) -> builtins.list[Silence]:
        """The silences active at `now`, from the cache (one cheap query checks whether
        the database changed since it was read)."""
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                # Not-yet-expired only: the cache stays small however long the history.
                rows = self._db.execute(
                    "SELECT * FROM alert_silences WHERE ends_at > ?", (now,)
                ).fetchall()
                self._cache = [_row(r) for r in rows]
                self._version = version
            cache = self._cache
        return [s for s in cache if s.active(now)]

    def muted_by(self, labels: Mapping[str, str], now: int) -> builtins.list[str]:
        """Ids of the silences active at `now` that match `labels` (empty: not silenced)."""
        return sorted(s.id for s in self.active(now) if s.matches(labels))


def _row(row: tuple[object, ...]) -> Silence:
    sid, matchers, starts, ends, by, comment, created, updated = row
    assert isinstance(matchers, str)
    return Silence(
        id=str(sid),
        matchers=_matchers(json.loads(matchers)),
        starts_at=int(str(starts)),
        ends_at=int(str(ends)),
        created_by=str(by),
        comment=str(comment),
        created_at=int(str(created)),
        updated_at=int(str(updated)),
    )
