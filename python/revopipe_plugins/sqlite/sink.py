"""The `sqlite` sink: metric history in the pipeline's data_dir, with rollups and
retention. Writes run in a worker thread (the event loop never waits on the disk) and a
batch is acknowledged only once its transaction has committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe_plugins.sqlite.config import SqliteConfig, duration_ns
from revopipe_plugins.sqlite.retention import Retention, RetentionReport
from revopipe_plugins.sqlite.store import HistoryStore


def database_path(config: SqliteConfig, data_dir: Path) -> Path:
    """Where a sink with this config keeps its database."""
    return data_dir / config.path


class SqliteSink(Sink[SqliteConfig]):
    type_name = "sqlite"
    Config = SqliteConfig
    description = "metric and event history in SQLite, with rollups and retention"
    clock: Callable[[], int] = staticmethod(time.time_ns)
    """Wall clock in ns for retention cutoffs; tests substitute their own."""

    async def start(self) -> None:
        cfg = self.config
        self._retention_errors: list[BaseException] = []
        self._stop = threading.Event()
        self.path = database_path(cfg, self.context.data_dir)
        self.store = await anyio.to_thread.run_sync(
            lambda: HistoryStore(
                self.path,
                cfg.tiers(),
                raw_retention_ns=duration_ns(cfg.raw_retention),
                events_retention_ns=duration_ns(cfg.events_retention),
                significant_digits=cfg.significant_digits,
            )
        )
        self.retention = Retention(
            self.store,
            raw_retention_ns=duration_ns(cfg.raw_retention),
            events_retention_ns=duration_ns(cfg.events_retention),
            max_size=cfg.max_size,
            stop=self._stop,
        )
        # A plain thread rather than a task: a sink has no task of its own between
        # calls, and retention must also run while no batches arrive.
        self._thread = threading.Thread(
            target=self._retention_loop, name=f"revopipe-retention-{self.context.name}"
        )
        self._thread.daemon = True
        self._thread.start()

    def _retention_loop(self) -> None:
        while True:
            try:
                report = self.retention.run(self.clock())
                self._log_report(report)
            except Exception as exc:
                self._retention_errors.append(exc)
            if self._stop.wait(self.config.retention_interval):
                return

    def _log_report(self, report: RetentionReport) -> None:
        if report.total:
            self.log.info(
                "retention deleted %d points, %d histograms, %d events, %d rollup rows "
                "(%s); database %d -> %d bytes",
                report.points,
                report.histograms,
                report.events,
                sum(report.rollups.values()),
                "size limit reached" if report.size_limited else "by age",
                report.size_before,
                report.size_after,
            )

    def _report_retention_errors(self) -> None:
        # Counted here, on the event loop, where the runtime's counters live.
        while self._retention_errors:
            exc = self._retention_errors.pop(0)
            self.context.stats.errors += 1
            self.log.error("sqlite %r: retention failed: %r", self.context.name, exc)

    async def write(self, batch: Batch) -> None:
        self._report_retention_errors()
        result = await anyio.to_thread.run_sync(self.store.write, batch)
        if result.rejected:
            self.context.stats.errors += result.rejected
            self.log.warning(
                "sqlite %r: %d histogram snapshot(s) with an unreadable hdr were kept as "
                "'rejected_histogram_snapshot' events",
                self.context.name,
                result.rejected,
            )

    async def flush(self) -> None:
        # Every acknowledged batch is committed already; a checkpoint folds the WAL back
        # into the database file so a copy of the file alone is complete.
        store = getattr(self, "store", None)
        if store is not None:
            await anyio.to_thread.run_sync(self._checkpoint, store)

    @staticmethod
    def _checkpoint(store: HistoryStore) -> None:
        with store.lock:
            store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def stop(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None:
            self._stop.set()
            await anyio.to_thread.run_sync(thread.join)
            self._report_retention_errors()
        store = getattr(self, "store", None)  # absent when start() failed
        if store is not None:
            await anyio.to_thread.run_sync(store.close)
