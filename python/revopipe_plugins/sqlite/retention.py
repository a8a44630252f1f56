"""Retention: deletes what is older than each tier's retention, then, while the database
is larger than `max_size`, the oldest raw data, then the oldest events, then the oldest
rollups (finest tier first). Work is done in short transactions (about `chunk` rows) so
the writer is never held up for long, and freed pages are handed back with
`PRAGMA incremental_vacuum`.

What "older than the cutoff" means, exactly (cutoff = now - retention):

- a raw point: `ts_ns < cutoff`; a raw histogram snapshot: `start_ns < cutoff`;
- an event: `ts_ns < cutoff`;
- a rollup window: it *ends* at or before the cutoff (`start_ns + window_ns <= cutoff`),
  so a window still holding data newer than the cutoff is kept whole.

Raw points and rollups are stored time-major, so each of these is a range delete.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from revopipe_plugins.sqlite.schema import BUCKET_NS
from revopipe_plugins.sqlite.store import HistoryStore, connection_size

MIN_NS = -(2**63)


@dataclass(slots=True)
class RetentionReport:
    """Rows deleted by one retention run, and the database size around it."""

    points: int = 0
    histograms: int = 0
    events: int = 0
    rollups: dict[int, int] = field(default_factory=dict)
    """Rollup rows (of points and of histograms) deleted per tier window_ns."""
    series: int = 0
    size_before: int = 0
    size_after: int = 0
    size_limited: bool = False
    """Whether the size limit had to delete data younger than its retention."""
    interrupted: bool = False
    """Whether the run stopped early because the sink is stopping."""

    @property
    def total(self) -> int:
        return self.points + self.histograms + self.events + sum(self.rollups.values())


class _Interrupted(Exception):
    pass


class Retention:
    def __init__(
        self,
        store: HistoryStore,
        *,
        raw_retention_ns: int,
        events_retention_ns: int,
        max_size: int,
        chunk: int = 20_000,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.conn = store.conn
        self.lock = store.lock
        self.raw_retention_ns = raw_retention_ns
        self.events_retention_ns = events_retention_ns
        self.max_size = max_size
        self.chunk = chunk
        self.stop = stop
        """Set to make a run return early, between two transactions (pipeline stop)."""

    # -- the run ----------------------------------------------------------------------

    def run(self, now_ns: int) -> RetentionReport:
        report = RetentionReport(size_before=self.size())
        try:
            self._run(now_ns, report)
        except _Interrupted:
            report.interrupted = True
        report.size_after = self.size()
        return report

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Interrupted

    def _run(self, now_ns: int, report: RetentionReport) -> None:
        raw_cut = now_ns - self.raw_retention_ns
        report.points += self.delete_points_before(raw_cut)
        report.histograms += self.delete_rows_before("histograms", "start_ns", raw_cut)
        report.events += self.delete_rows_before(
            "events", "ts_ns", now_ns - self.events_retention_ns
        )
        tiers = self.tiers()
        for window, keep in tiers:
            # Keep a window while any of it is within retention:
            # start + window <= cutoff  <=>  start < cutoff - window + 1.
            bound = now_ns - keep - window + 1
            n = self.delete_windows_before("rollups", window, bound)
            n += self.delete_windows_before("hist_rollups", window, bound)
            report.rollups[window] = report.rollups.get(window, 0) + n
        self.vacuum()
        if self.size() > self.max_size:
            report.size_limited = True
            self.shrink(report)
        # A series with nothing newer than the longest-kept data has nothing left.
        horizon = max([self.raw_retention_ns] + [keep + window for window, keep in tiers])
        report.series = self.forget_series_before(now_ns - horizon)
        self.vacuum(checkpoint=True)

    def tiers(self) -> list[tuple[int, int]]:
        """Every tier in the database, including those no longer configured (they age
        out by the retention they were written with)."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT window_ns, retention_ns FROM tiers ORDER BY window_ns"
            ).fetchall()
        return [(int(w), int(k)) for w, k in rows]

    def size(self) -> int:
        with self.lock:
            return connection_size(self.conn)

    def vacuum(self, checkpoint: bool = False) -> None:
        with self.lock:
            # executescript steps the pragma to the end; execute() would free one page.
            self.conn.executescript("PRAGMA incremental_vacuum;")
            if checkpoint:
                # Lets the file itself shrink: truncation reaches the main file only when
                # the WAL is checkpointed. Best effort; a busy reader just postpones it.
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- deleting ---------------------------------------------------------------------

    def _delete_range(
        self, table: str, col: str, where: str, args: tuple[int, ...], bound: int, unit: int
    ) -> int:
        """Delete the rows of `table` (matching `where`) with `col < bound`, oldest first,
        in steps that grow or shrink to stay near `chunk` rows per transaction. `col`
        leads the table's key after `where`'s columns, so each step is a range."""
        prefix = f"{where} AND " if where else ""
        with self.lock:
            (lo,) = self.conn.execute(
                f"SELECT min({col}) FROM {table}" + (f" WHERE {where}" if where else ""), args
            ).fetchone()
        if lo is None:
            return 0
        deleted = 0
        step = unit
        while lo < bound:
            self._check_stop()
            hi = min(bound, lo + step)
            with self.lock:
                n = self.conn.execute(
                    f"DELETE FROM {table} WHERE {prefix}{col} >= ? AND {col} < ?",
                    (*args, lo, hi),
                ).rowcount
            deleted += n
            lo = hi
            if n < self.chunk // 2:
                step *= 2
            elif n > self.chunk:
                step = max(unit, step // 2)
        return deleted

    def delete_points_before(self, cutoff: int) -> int:
        """Raw points with `ts_ns < cutoff`: whole minute buckets, then the part of the
        cutoff's own bucket that is older."""
        last = cutoff // BUCKET_NS
        n = self._delete_range("points", "bucket", "", (), last, 1)
        self._check_stop()
        with self.lock:
            n += self.conn.execute(
                "DELETE FROM points WHERE bucket = ? AND ts_ns < ?", (last, cutoff)
            ).rowcount
        return n

    def delete_windows_before(self, table: str, window: int, bound: int) -> int:
        """Rollup windows of one tier starting before `bound`."""
        return self._delete_range(table, "start_ns", "window_ns = ?", (window,), bound, window)

    def delete_rows_before(self, table: str, col: str, bound: int) -> int:
        """Rows of a rowid table with an index on `col`, with `col < bound`."""
        deleted = 0
        while True:
            self._check_stop()
            with self.lock:
                n = self.conn.execute(
                    f"DELETE FROM {table} WHERE id IN "
                    f"(SELECT id FROM {table} WHERE {col} < ? ORDER BY {col} LIMIT ?)",
                    (bound, self.chunk),
                ).rowcount
            deleted += n
            if n < self.chunk:
                return deleted

    def forget_series_before(self, threshold: int) -> int:
        """Delete series with no point or snapshot since `threshold`; the writer
        re-creates one if it shows up again."""
        with self.lock:
            n = self.conn.execute(
                "DELETE FROM series WHERE max(coalesce(last_ts, ?1), "
                "coalesce(last_snapshot_ns, ?1)) < ?2",
                (MIN_NS, threshold),
            ).rowcount
            if n:
                self.store.forget_series()
        return n

    # -- by size ----------------------------------------------------------------------

    def _min(self, sql: str, *args: int) -> int | None:
        with self.lock:
            (v,) = self.conn.execute(sql, args).fetchone()
        return None if v is None else int(v)

    def shrink(self, report: RetentionReport) -> None:
        """Delete oldest-first until the database is within `max_size`."""

        def oldest_raw() -> int | None:
            snap = self._min("SELECT min(start_ns) FROM histograms")
            times = [self._min("SELECT min(bucket) FROM points")]
            times.append(None if snap is None else snap // BUCKET_NS)
            found = [t for t in times if t is not None]
            return min(found) if found else None

        def delete_raw(hi: int) -> None:
            report.points += self._delete_range("points", "bucket", "", (), hi, 1)
            report.histograms += self.delete_rows_before("histograms", "start_ns", hi * BUCKET_NS)

        if self._shrink_oldest_first(oldest_raw, delete_raw, 1):
            return

        def delete_events(hi: int) -> None:
            report.events += self.delete_rows_before("events", "ts_ns", hi)

        oldest_event = lambda: self._min("SELECT min(ts_ns) FROM events")  # noqa: E731
        if self._shrink_oldest_first(oldest_event, delete_events, BUCKET_NS):
            return
        for window, _ in self.tiers():

            def oldest_window(w: int = window) -> int | None:
                times = [
                    self._min("SELECT min(start_ns) FROM rollups WHERE window_ns = ?", w),
                    self._min("SELECT min(start_ns) FROM hist_rollups WHERE window_ns = ?", w),
                ]
                found = [t for t in times if t is not None]
                return min(found) if found else None

            def delete_windows(hi: int, w: int = window) -> None:
                n = self.delete_windows_before("rollups", w, hi)
                n += self.delete_windows_before("hist_rollups", w, hi)
                report.rollups[w] = report.rollups.get(w, 0) + n

            if self._shrink_oldest_first(oldest_window, delete_windows, window):
                return

    def _shrink_oldest_first(
        self, oldest: Callable[[], int | None], delete: Callable[[int], None], unit: int
    ) -> bool:
        """Delete everything older than `oldest() + step * unit`, re-measure, repeat until
        the size is within the limit (True) or nothing is left (False). The step follows
        the bytes freed per unit so far, and at most doubles: pages are only freed once
        empty, so early measurements run low and must not make it leap."""
        step = 1
        units = 0
        freed = 0
        while True:
            size = self.size()
            if size <= self.max_size:
                return True
            lo = oldest()
            if lo is None:
                return False
            delete(lo + step * unit)
            self.vacuum()
            after = self.size()
            units += step
            freed += size - after
            excess = after - self.max_size
            if excess <= 0:
                return True
            wanted = math.ceil(excess * units / freed) if freed > 0 else 2 * step
            step = max(1, min(wanted, 2 * step))
