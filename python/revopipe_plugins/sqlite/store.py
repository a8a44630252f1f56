"""Writes batches into the history database: raw points, incremental rollups, histogram
snapshots (raw and merged per rollup window) and other events, one transaction per batch.

Everything here is synchronous and meant for a worker thread; one lock serializes the
writer and retention on the single connection.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from revopipe import _core
from revopipe.batch import Batch, MetricBatch
from revopipe.events import HistogramSnapshot, Metric, MetricKind, Tags, now_ns
from revopipe_plugins.sqlite.config import Tier
from revopipe_plugins.sqlite.schema import BUCKET_NS, open_writer

COUNTER = int(MetricKind.COUNTER)
HISTOGRAM = int(MetricKind.HISTOGRAM)
NO_TS = -(2**63)
MERGE_SERIES_CAP = 2**62
"""The merging aggregators hold one series per stored series: never cap them."""

log = logging.getLogger(__name__)
T = TypeVar("T")

_INSERT_POINT = "INSERT INTO points (bucket, series_id, ts_ns, seq, value) VALUES (?, ?, ?, ?, ?)"
# A point older than its series' newest: the next free seq at its timestamp is read in the
# same statement, so earlier rows of the same batch (inserted just before) are seen.
_INSERT_LATE_POINT = """
INSERT INTO points (bucket, series_id, ts_ns, seq, value)
SELECT ?1, ?2, ?3, coalesce(
    (SELECT max(seq) + 1 FROM points WHERE bucket = ?1 AND series_id = ?2 AND ts_ns = ?3), 0),
    ?4
"""
_UPDATE_SERIES = "UPDATE series SET last_ts = ?, base_ts = ?, base_value = ? WHERE id = ?"
# Values on the right of SET are the row's values before the update, so `last` compares
# with the old `last_ts`. `increase` is never NULL for a counter and always NULL otherwise
# (a series keeps the kind it was first seen with), so NULL + NULL stays NULL.
_UPSERT_ROLLUP = """
INSERT INTO rollups (window_ns, start_ns, series_id, count, sum, min, max, last_ts, last,
                     increase)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (window_ns, start_ns, series_id) DO UPDATE SET
    count = count + excluded.count,
    sum = sum + excluded.sum,
    min = min(min, excluded.min),
    max = max(max, excluded.max),
    last = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last ELSE last END,
    last_ts = max(last_ts, excluded.last_ts),
    increase = increase + excluded.increase
"""
_UPSERT_HIST_ROLLUP = """
INSERT INTO hist_rollups (window_ns, start_ns, series_id, count, sum, min, max, hdr)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (window_ns, start_ns, series_id) DO UPDATE SET
    count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max,
    hdr = excluded.hdr
"""


def tags_json(tags: Tags) -> str:
    """Canonical JSON of a tag set: keys sorted, compact, so equal sets are equal text."""
    return json.dumps(dict(tags), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_time(event: object) -> int:
    """The time an event is filed under: its `timestamp`, else its start (spans,
    profiles)."""
    for attr in ("timestamp", "start_ns", "end_ns"):
        value = getattr(event, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return now_ns()


def _real(x: float) -> float | None:
    # SQLite stores NaN as NULL; say so explicitly so NOT NULL columns are not involved.
    return None if x != x else x


class _Series:
    """What the writer remembers of a series between batches."""

    __slots__ = ("base_ts", "base_value", "id", "kind", "seq", "ts", "unit")

    def __init__(self, sid: int, kind: int, unit: str) -> None:
        self.id = sid
        self.kind = kind
        self.unit = unit
        self.ts = NO_TS
        """Newest stored point's timestamp, and its seq: the next point's seq follows."""
        self.seq = -1
        self.base_ts = NO_TS
        """Newest finite value (by timestamp) and its time: counters' increases start
        from it, and a point older than it is late."""
        self.base_value: float | None = None


@dataclass(slots=True)
class WriteResult:
    points: int = 0
    histograms: int = 0
    events: int = 0
    rejected: int = 0
    """Histogram snapshots whose hdr could not be decoded (kept as events)."""


class HistoryStore:
    """The writer side of a history database."""

    def __init__(
        self,
        path: Path,
        tiers: Sequence[Tier],
        *,
        raw_retention_ns: int,
        events_retention_ns: int,
        significant_digits: int = 3,
    ) -> None:
        self.path = path
        self.tiers = sorted(tiers, key=lambda t: t.window_ns)
        self.significant_digits = significant_digits
        self.lock = threading.Lock()
        self.conn = open_writer(path)
        self._series: dict[tuple[str, Tags], _Series] = {}
        with self.lock:
            self._transaction(lambda: self._record_settings(raw_retention_ns, events_retention_ns))

    def _record_settings(self, raw_retention_ns: int, events_retention_ns: int) -> None:
        # Readers plan queries from these (which tier covers a range) without the config.
        self.conn.executemany(
            "INSERT INTO tiers (window_ns, retention_ns) VALUES (?, ?) "
            "ON CONFLICT (window_ns) DO UPDATE SET retention_ns = excluded.retention_ns",
            [(t.window_ns, t.retention_ns) for t in self.tiers],
        )
        self.conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [
                ("raw_retention_ns", str(raw_retention_ns)),
                ("events_retention_ns", str(events_retention_ns)),
                ("significant_digits", str(self.significant_digits)),
            ],
        )

    # -- transactions -----------------------------------------------------------------

    def _transaction(self, work: Callable[[], T]) -> T:
        """Run `work()` in one write transaction (caller holds the lock). On failure the
        transaction rolls back and the cached series state, which may describe rows that
        no longer exist, is dropped."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self.conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT may have ended the transaction already.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._series.clear()
            raise
        return result

    def forget_series(self) -> None:
        """Drop cached series state (after retention deleted series rows)."""
        self._series.clear()

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # -- writing ----------------------------------------------------------------------

    def write(self, batch: Batch) -> WriteResult:
        """Write one batch in one transaction; returns once it is committed."""
        result = WriteResult()
        if not len(batch):
            return result
        metrics = batch.metrics
        snapshots: list[HistogramSnapshot] = []
        events: list[Any] = []
        loose: list[Metric] = []
        for e in batch.events:
            if isinstance(e, HistogramSnapshot):
                snapshots.append(e)
            elif isinstance(e, Metric):
                loose.append(e)
            else:
                events.append(e)
        if loose:
            metrics = MetricBatch.concat([metrics, MetricBatch.from_metrics(loose)])

        def work() -> None:
            if len(metrics):
                self._write_metrics(metrics)
                result.points = len(metrics)
            if snapshots:
                rejected = self._write_snapshots(snapshots)
                result.histograms = len(snapshots) - len(rejected)
                result.rejected = len(rejected)
                events.extend(rejected)
            if events:
                self._write_events(events)
                result.events = len(events)

        with self.lock:
            self._transaction(work)
        return result

    def _state(self, name: str, tags: Tags, kind: int, unit: str) -> _Series:
        """The series' cached state, reading (or creating) it in the database."""
        tj = tags_json(tags)
        row = self.conn.execute(
            "SELECT id, kind, unit, last_ts, base_ts, base_value FROM series "
            "WHERE name = ? AND tags = ?",
            (name, tj),
        ).fetchone()
        if row is None:
            (sid,) = self.conn.execute(
                "INSERT INTO series (name, tags, kind, unit) VALUES (?, ?, ?, ?) RETURNING id",
                (name, tj, kind, unit),
            ).fetchone()
            st = _Series(sid, kind, unit)
        else:
            st = _Series(row[0], row[1], row[2])
            if row[3] is not None:
                st.ts = row[3]
                (seq,) = self.conn.execute(
                    "SELECT max(seq) FROM points WHERE bucket = ? AND series_id = ? AND ts_ns = ?",
                    (st.ts // BUCKET_NS, st.id, st.ts),
                ).fetchone()
                st.seq = -1 if seq is None else seq  # None: aged out since
            if row[4] is not None:
                st.base_ts, st.base_value = row[4], row[5]
        self._series[(name, tags)] = st
        return st

    def _write_metrics(self, m: MetricBatch) -> None:
        states = self._series
        load = self._state
        points: list[tuple[int, int, int, int, float]] = []
        late: list[tuple[int, int, int, float]] = []
        touched: dict[int, _Series] = {}
        add_point = points.append
        bucket = BUCKET_NS
        w0 = self.tiers[0].window_ns if self.tiers else 0
        # (series id, window start) -> [count, sum, min, max, last_ts, last, increase]
        accs: dict[tuple[int, int], list[Any]] = {}
        for name, kind, value, unit, t, tags in zip(
            m.names, m.kinds, m.values, m.units, m.timestamps, m.tags, strict=True
        ):
            st = states.get((name, tags))
            if st is None:
                st = load(name, tags, kind, unit)
            touched[st.id] = st
            if t > st.ts:
                st.ts = t
                st.seq = 0
                add_point((t // bucket, st.id, t, 0, value))
            elif t == st.ts:
                st.seq += 1
                add_point((t // bucket, st.id, t, st.seq, value))
            else:
                late.append((t // bucket, st.id, t, value))
            if value - value != 0.0:
                continue  # NaN / ±inf: stored raw, never a baseline, left out of rollups
            increase: float | None = None
            if t >= st.base_ts:
                if st.kind == COUNTER:
                    # The first value is a baseline; a drop is a reset (from 0).
                    prev = st.base_value
                    increase = 0.0 if prev is None else value - prev if value >= prev else value
                st.base_ts = t
                st.base_value = value
            elif st.kind == COUNTER:
                increase = 0.0  # late: the value before it is unknown here
            if not w0:
                continue
            key = (st.id, t - t % w0)
            acc = accs.get(key)
            if acc is None:
                accs[key] = [1, value, value, value, t, value, increase]
            else:
                acc[0] += 1
                acc[1] += value
                if value < acc[2]:
                    acc[2] = value
                if value > acc[3]:
                    acc[3] = value
                if t >= acc[4]:
                    acc[4] = t
                    acc[5] = value
                if increase is not None:
                    acc[6] = increase if acc[6] is None else acc[6] + increase
        conn = self.conn
        conn.executemany(_INSERT_POINT, points)
        if late:
            conn.executemany(_INSERT_LATE_POINT, late)
        for i, tier in enumerate(self.tiers):
            if i:
                accs = _coarsen(accs, tier.window_ns)
            w = tier.window_ns
            conn.executemany(
                _UPSERT_ROLLUP,
                [(w, start, sid, *acc) for (sid, start), acc in accs.items()],
            )
        conn.executemany(
            _UPDATE_SERIES,
            [
                (st.ts, None if st.base_ts == NO_TS else st.base_ts, st.base_value, sid)
                for sid, st in touched.items()
            ],
        )

    def _write_snapshots(self, snaps: Sequence[HistogramSnapshot]) -> list[dict[str, Any]]:
        """Raw rows and merged rollups; returns the rejected snapshots as event dicts."""
        digits = self.significant_digits
        windows = [t.window_ns for t in self.tiers] or [1]
        aggs = [
            _core.Aggregator(
                w, percentiles=[], significant_digits=digits, max_series_per_metric=MERGE_SERIES_CAP
            )
            for w in windows
        ]
        rejected: list[dict[str, Any]] = []
        rows = []
        touched: set[tuple[_Series, int]] = set()
        for s in snaps:
            st = self._series.get((s.name, s.tags)) or self._state(
                s.name, s.tags, HISTOGRAM, s.unit
            )
            try:
                raw = base64.b64decode(s.hdr, validate=True)
                # The first merge decodes the hdr: a bad one is refused before any row.
                aggs[0].merge_snapshot(
                    str(st.id), st.unit, (), s.start_ns, s.count, s.sum, s.min, s.max, s.hdr
                )
            except (ValueError, binascii.Error) as exc:
                log.warning(
                    "history %s: histogram snapshot %s %s has an unreadable hdr (%s); "
                    "kept as an event of type 'rejected_histogram_snapshot'",
                    self.path,
                    s.name,
                    dict(s.tags),
                    exc,
                )
                rejected.append({**s.to_dict(), "type": "rejected_histogram_snapshot"})
                continue
            for agg in aggs[1:]:
                agg.merge_snapshot(
                    str(st.id), st.unit, (), s.start_ns, s.count, s.sum, s.min, s.max, s.hdr
                )
            touched.add((st, s.start_ns))
            exemplars = (
                json.dumps([list(_exemplar(e)) for e in s.exemplars], separators=(",", ":"))
                if s.exemplars
                else None
            )
            rows.append(
                (
                    st.id,
                    s.start_ns,
                    s.end_ns,
                    s.count,
                    _real(s.sum),
                    _real(s.min),
                    _real(s.max),
                    s.resolution,
                    raw,
                    exemplars,
                )
            )
        self.conn.executemany(
            "INSERT INTO histograms (series_id, start_ns, end_ns, count, sum, min, max, "
            "resolution, hdr, exemplars) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        self.conn.executemany(
            "UPDATE series SET last_snapshot_ns = max(coalesce(last_snapshot_ns, ?1), ?1) "
            "WHERE id = ?2",
            [(start, st.id) for st, start in touched],
        )
        for tier, agg in zip(self.tiers, aggs, strict=False):
            w = tier.window_ns
            seen: set[tuple[int, int]] = set()
            for st, start in touched:
                ws = start - start % w
                if (st.id, ws) in seen:
                    continue
                seen.add((st.id, ws))
                old = self.conn.execute(
                    "SELECT count, sum, min, max, hdr FROM hist_rollups "
                    "WHERE window_ns = ? AND start_ns = ? AND series_id = ?",
                    (w, ws, st.id),
                ).fetchone()
                if old is not None:
                    agg.merge_snapshot(
                        str(st.id),
                        st.unit,
                        (),
                        ws,
                        old[0],
                        old[1],
                        old[2],
                        old[3],
                        base64.b64encode(old[4]).decode(),
                    )
            self.conn.executemany(
                _UPSERT_HIST_ROLLUP,
                [
                    (
                        w,
                        r["start_ns"],
                        int(r["name"]),
                        r["count"],
                        r["sum"],
                        r["min"],
                        r["max"],
                        base64.b64decode(r["hdr"] or ""),
                    )
                    for r in agg.flush(0, force=True)
                ],
            )
        return rejected

    def _write_events(self, events: Iterable[Any]) -> None:
        rows = []
        for e in events:
            if isinstance(e, dict):
                data, etype, ts = e, str(e["type"]), int(e.get("start_ns") or now_ns())
            else:
                data, etype, ts = e.to_dict(), str(e.type), event_time(e)
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
            rows.append((etype, ts, text))
        self.conn.executemany("INSERT INTO events (type, ts_ns, data) VALUES (?, ?, ?)", rows)


def _exemplar(e: Any) -> tuple[float, str, str, int]:
    return (e.value, e.trace_id, e.span_id, e.timestamp_ns)


def _coarsen(accs: dict[tuple[int, int], list[Any]], w: int) -> dict[tuple[int, int], list[Any]]:
    """Fold a finer tier's windows into windows of `w` (a whole multiple of theirs).
    Reuses, and so changes, the finer tier's lists: call it once they are written."""
    out: dict[tuple[int, int], list[Any]] = {}
    for (sid, start), a in accs.items():
        key = (sid, start - start % w)
        b = out.get(key)
        if b is None:
            out[key] = a
            continue
        b[0] += a[0]
        b[1] += a[1]
        if a[2] < b[2]:
            b[2] = a[2]
        if a[3] > b[3]:
            b[3] = a[3]
        if a[4] >= b[4]:
            b[4] = a[4]
            b[5] = a[5]
        if a[6] is not None:
            b[6] = a[6] if b[6] is None else b[6] + a[6]
    return out


def connection_size(conn: sqlite3.Connection) -> int:
    """The database's size in bytes (its pages, free ones included)."""
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    return int(pages) * int(size)
