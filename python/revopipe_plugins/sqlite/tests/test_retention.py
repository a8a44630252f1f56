"""Retention deletes exactly what is older than each cutoff (rows straddling it, an
injected clock, no sleeps), in chunks, and the size limit deletes oldest-first: raw data,
then events, then rollups, finest tier first."""

from __future__ import annotations

import sqlite3
from array import array
from pathlib import Path

import anyio
import pytest

from revopipe import _core
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Alert, HistogramSnapshot, MetricKind, Severity
from revopipe.testing import make
from revopipe_plugins.sqlite.config import Tier
from revopipe_plugins.sqlite.retention import Retention
from revopipe_plugins.sqlite.sink import SqliteSink
from revopipe_plugins.sqlite.store import HistoryStore

S = 1_000_000_000
M = 60 * S
H = 3600 * S
T0 = 1_800_000_000 * S  # a whole number of hours


def open_store(path: Path, tiers: list[Tier] | None = None) -> HistoryStore:
    return HistoryStore(
        path,
        tiers if tiers is not None else [Tier(M, 2 * H), Tier(H, 10 * H)],
        raw_retention_ns=H,
        events_retention_ns=3 * H,
    )


def retention(store: HistoryStore, max_size: int = 2**40, chunk: int = 20_000) -> Retention:
    return Retention(
        store, raw_retention_ns=H, events_retention_ns=3 * H, max_size=max_size, chunk=chunk
    )


def gauges(*stamps: int, name: str = "g", tags: dict[str, str] | None = None) -> Batch:
    b = MetricBatchBuilder()
    for t in stamps:
        b.add(name, float(t % 10**9), MetricKind.GAUGE, "1", tags or {}, t)
    return Batch(b.build())


def snapshot(start: int) -> HistogramSnapshot:
    agg = _core.Aggregator(10 * S)
    agg.ingest_values("h", "s", (), array("d", [0.5]), start)
    (r,) = agg.flush(0, force=True)
    return HistogramSnapshot.from_core(r, start, start + 10 * S)


def column(path: Path, sql: str) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute(sql)]
    finally:
        conn.close()


def starts(path: Path, name: str, window: int, table: str = "rollups") -> list[int]:
    return column(
        path,
        f"SELECT r.start_ns FROM {table} r JOIN series s ON s.id = r.series_id "
        f"WHERE s.name = '{name}' AND r.window_ns = {window} ORDER BY r.start_ns",
    )


@pytest.mark.parametrize("offset", [0, 30 * S, M - 1])
def test_age_cutoff_is_exact_for_every_table(tmp_path: Path, offset: int) -> None:
    path = tmp_path / "h.db"
    s = open_store(path)
    now = T0 + 20 * H + offset
    raw_cut = now - H
    s.write(gauges(raw_cut - 2, raw_cut - 1, raw_cut - 1, raw_cut, raw_cut, raw_cut + 1))
    s.write(Batch(events=tuple(snapshot(t) for t in (raw_cut - 1, raw_cut, raw_cut + 1))))
    ev_cut = now - 3 * H
    alerts = [Alert("r", "firing", Severity.WARNING, "x", timestamp=t) for t in range(-1, 2)]
    s.write(
        Batch(
            events=tuple(
                Alert(a.rule, a.state, a.severity, a.summary, timestamp=ev_cut + a.timestamp)
                for a in alerts
            )
        )
    )
    # 1m tier, kept 2h: with the cutoff anywhere in [18h, 18h + 1m), the window ending at
    # 18h is entirely older (deleted) and the one starting at 18h is not (kept, even when
    # it straddles the cutoff).
    r = T0 + 18 * H
    s.write(gauges(r - M, r - 1, r, r + M - 1, name="r"))
    report = retention(s).run(now)
    s.close()

    assert column(path, "SELECT ts_ns FROM points ORDER BY ts_ns, seq") == [
        raw_cut,
        raw_cut,
        raw_cut + 1,
    ]
    assert column(path, "SELECT start_ns FROM histograms ORDER BY start_ns") == [
        raw_cut,
        raw_cut + 1,
    ]
    assert column(path, "SELECT ts_ns FROM events ORDER BY ts_ns") == [ev_cut, ev_cut + 1]
    assert starts(path, "r", M) == [r]
    assert starts(path, "r", H) == [r - H, r]  # 1h tier: kept 10h, nothing old enough
    assert starts(path, "g", M) != [] and starts(path, "h", M, "hist_rollups") != []
    assert (report.points, report.histograms, report.events) == (3 + 4, 1, 1)
    assert report.rollups == {M: 1, H: 0}


def test_chunked_deletes_handle_many_rows_sharing_a_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    s = open_store(path, [])
    now = T0 + 10 * H
    cut = now - H
    for series in ("a", "b", "c"):
        s.write(gauges(*([cut - 5] * 10 + [cut - 3, cut - 2] * 4 + [cut] * 4), name=series))
    report = retention(s, chunk=3).run(now)
    s.close()
    assert report.points == 3 * 18
    assert column(path, f"SELECT count(*) FROM points WHERE ts_ns = {cut}") == [12]
    assert column(path, "SELECT count(*) FROM points") == [12]


def test_size_limit_deletes_the_oldest_raw_points_first(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    s = open_store(path, [Tier(M, 1000 * H), Tier(H, 1000 * H)])
    stamps = [T0 + i * 10 * S for i in range(600)]
    for i in range(0, len(stamps), 50):
        for series in range(40):
            s.write(gauges(*stamps[i : i + 50], tags={"host": f"h{series}"}))
    s.write(Batch(events=(Alert("r", "firing", Severity.WARNING, "x", timestamp=T0),)))
    rollups_before = column(path, "SELECT count(*) FROM rollups")
    r = retention(s)
    size = r.size()
    limit = size // 2
    report = Retention(
        s, raw_retention_ns=1000 * H, events_retention_ns=1000 * H, max_size=limit
    ).run(T0)
    s.close()

    assert report.size_limited and report.size_before == size
    assert report.size_after <= limit and path.stat().st_size <= limit
    kept = column(path, "SELECT ts_ns FROM points")
    assert 0 < len(kept) < 600 * 40
    oldest_kept = min(kept)
    # exactly the points older than the oldest survivor are gone: every series kept
    # every point from there on
    assert len(kept) == 40 * sum(1 for t in stamps if t >= oldest_kept)
    assert report.points == 600 * 40 - len(kept)
    # raw data alone was enough: rollups and events untouched
    assert column(path, "SELECT count(*) FROM rollups") == rollups_before
    assert column(path, "SELECT count(*) FROM events") == [1]


def test_size_limit_then_takes_events_then_the_finest_rollups(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    s = open_store(path, [Tier(M, 1000 * H), Tier(H, 1000 * H)])
    stamps = [T0 + i * M for i in range(300)]
    for series in range(100):
        s.write(gauges(*stamps, tags={"host": f"h{series}"}))
    s.write(
        Batch(
            events=tuple(Alert("r", "firing", Severity.WARNING, "x", timestamp=t) for t in stamps)
        )
    )
    s.conn.execute("DELETE FROM points")  # raw already aged out
    retention(s).vacuum()
    hours_before = column(path, f"SELECT count(*) FROM rollups WHERE window_ns = {H}")
    size = retention(s).size()
    limit = size * 2 // 3
    report = Retention(
        s, raw_retention_ns=1000 * H, events_retention_ns=1000 * H, max_size=limit, chunk=500
    ).run(T0)
    s.close()

    assert report.size_after <= limit
    assert column(path, "SELECT count(*) FROM events") == [0]
    kept = column(path, f"SELECT start_ns FROM rollups WHERE window_ns = {M}")
    assert 0 < len(kept) < 300 * 100
    assert len(kept) == 100 * sum(1 for t in stamps if t >= min(kept))
    assert column(path, f"SELECT count(*) FROM rollups WHERE window_ns = {H}") == hours_before


def test_a_tier_dropped_from_the_config_still_ages_out(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    s = open_store(path, [Tier(M, 2 * H)])
    s.write(gauges(T0, T0 + 5 * H))
    s.close()
    s = open_store(path, [Tier(H, 10 * H)])  # the 1m tier is no longer configured
    retention(s).run(T0 + 5 * H + 10)
    s.close()
    assert starts(path, "g", M) == [T0 + 5 * H]


def test_empty_series_are_forgotten_and_come_back(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    s = open_store(path, [])
    s.write(gauges(T0, name="old"))
    s.write(gauges(T0 + 10 * H, name="new"))
    report = retention(s).run(T0 + 10 * H)
    assert report.series == 1
    s.write(gauges(T0 + 10 * H + 1, name="old"))  # the cached series id is not reused
    s.close()
    assert column(
        path,
        "SELECT count(*) FROM points p JOIN series s ON s.id = p.series_id WHERE s.name = 'old'",
    ) == [1]


@pytest.mark.anyio
async def test_sink_runs_retention_on_its_interval_with_its_clock(tmp_path: Path) -> None:
    now = T0 + 100 * H
    sink = make(
        SqliteSink,
        {"inputs": ["x"], "raw_retention": "1h", "retention_interval": "20ms"},
        tmp_path,
    )
    sink.clock = lambda: now  # type: ignore[method-assign]
    await sink.start()
    try:
        await sink.write(gauges(now - 2 * H, now - 30 * S))
        with anyio.fail_after(10):
            while column(tmp_path / "history.db", "SELECT count(*) FROM points") != [1]:
                await anyio.sleep(0.02)
    finally:
        await sink.stop()
    assert column(tmp_path / "history.db", "SELECT ts_ns FROM points") == [now - 30 * S]
