"""The query helper: series and tag matchers, raw vs rollup tier by step and range,
bucketing, latest values, events, the schema version check, and reading while the sink
writes."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Alert, Health, HealthStatus, MetricKind, Severity, Span
from revopipe.testing import make
from revopipe_plugins.sqlite.config import Tier
from revopipe_plugins.sqlite.query import History, HistoryError, TagMatcher
from revopipe_plugins.sqlite.schema import open_writer
from revopipe_plugins.sqlite.sink import SqliteSink
from revopipe_plugins.sqlite.store import HistoryStore

S = 1_000_000_000
M = 60 * S
H = 3600 * S
D = 24 * H
T0 = 1_800_000_000 * S


def fill(path: Path) -> None:
    """Two hours of one sample every 10 s: a gauge on 3 hosts and a counter."""
    s = HistoryStore(
        path, [Tier(M, 7 * D), Tier(H, 90 * D)], raw_retention_ns=D, events_retention_ns=D
    )
    b = MetricBatchBuilder()
    for i in range(720):
        t = T0 + i * 10 * S
        for host in ("web-1", "web-2", "db-1"):
            b.add("cpu", float(i % 7), MetricKind.GAUGE, "1", {"host": host, "env": "prod"}, t)
        b.add("requests", float(i * 3), MetricKind.COUNTER, "1", {"host": "web-1"}, t)
    s.write(Batch(b.build()))
    s.write(
        Batch(
            events=(
                Alert("cpu_high", "firing", Severity.CRITICAL, "hot", timestamp=T0 + M),
                Alert("cpu_high", "resolved", Severity.CRITICAL, "ok", timestamp=T0 + 5 * M),
                Health("db", HealthStatus.DEGRADED, "slow", timestamp=T0 + 2 * M),
                Span("GET /", "a" * 32, "b" * 16, T0 + 3 * M, T0 + 3 * M + S),
            )
        )
    )
    s.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "h.db"
    fill(path)
    return path


def at(now: int, path: Path) -> History:
    return History(path, clock=lambda: now)


def test_names_series_and_tag_matchers(db: Path) -> None:
    with at(T0, db) as h:
        assert h.metric_names() == ["cpu", "requests"]
        assert h.metric_names("c*") == ["cpu"]
        hosts = lambda tags: sorted(s.tag_dict["host"] for s in h.series("cpu", tags))  # noqa: E731
        assert hosts(None) == ["db-1", "web-1", "web-2"]
        assert hosts({"host": "web-1"}) == ["web-1"]
        assert hosts(["host=~web-.*"]) == ["web-1", "web-2"]
        assert hosts(["host!~web-.*"]) == ["db-1"]
        assert hosts(["host!=web-1", "env=prod"]) == ["db-1", "web-2"]
        assert hosts([TagMatcher("missing", "=", "")]) == ["db-1", "web-1", "web-2"]
        assert hosts(["env=dev"]) == []
        assert [s.name for s in h.series("*")] == ["cpu"] * 3 + ["requests"]
        assert h.series("requests")[0].kind is MetricKind.COUNTER


def test_bad_matchers_are_clear() -> None:
    with pytest.raises(ValueError, match="expected key=value"):
        TagMatcher.parse("just-a-word")
    with pytest.raises(ValueError, match="bad regex"):
        TagMatcher.parse("host=~(")


@pytest.mark.parametrize(
    ("now", "start", "step", "source"),
    [
        (T0 + 2 * H, T0, None, "raw"),  # raw covers the range
        (T0 + 2 * H, T0, 30 * S, "raw"),  # step finer than the 1m tier
        (T0 + 2 * H, T0, 5 * M, "1m"),  # the coarsest tier that fits in the step
        (T0 + 2 * H, T0, 2 * H, "1h"),
        (T0 + 3 * D, T0, None, "1m"),  # raw aged out: the finest tier that covers
        (T0 + 3 * D, T0, 10 * S, "1m"),
        (T0 + 30 * D, T0, 5 * M, "1h"),  # 1m aged out too: coarser than the step
        (T0 + 365 * D, T0, None, "1h"),  # nothing covers: the one kept longest
    ],
)
def test_source_choice(db: Path, now: int, start: int, step: int | None, source: str) -> None:
    with at(now, db) as h:
        assert h.choose_source(start, step).label == source
        (res, *_) = h.points("requests", start_ns=start, step_ns=step)
        assert res.source == source


def test_raw_points_and_buckets(db: Path) -> None:
    with at(T0 + 2 * H, db) as h:
        (raw,) = h.points("cpu", {"host": "web-1"}, start_ns=T0 + 10 * S, end_ns=T0 + 40 * S)
        assert raw.source == "raw" and raw.step_ns == 0
        assert [(s.ts_ns, s.value) for s in raw.samples] == [
            (T0 + 10 * S, 1.0),
            (T0 + 20 * S, 2.0),
            (T0 + 30 * S, 3.0),
        ]
        # raw bucketed by a step finer than any tier: mean, min, max, last per bucket
        (b,) = h.points("cpu", {"host": "web-1"}, start_ns=T0, end_ns=T0 + M, step_ns=30 * S)
        assert [(s.ts_ns, s.count, s.min, s.max, s.last) for s in b.samples] == [
            (T0, 3, 0.0, 2.0, 2.0),
            (T0 + 30 * S, 3, 3.0, 5.0, 5.0),
        ]
        assert b.samples[0].value == pytest.approx(1.0)
        # a counter's increase per raw bucket, including the step from the point before
        (c,) = h.points("requests", start_ns=T0 + 30 * S, end_ns=T0 + 90 * S, step_ns=30 * S)
        assert [(s.ts_ns, s.increase, s.value) for s in c.samples] == [
            (T0 + 30 * S, 9.0, 15.0),
            (T0 + 60 * S, 9.0, 24.0),
        ]


def test_rollup_buckets_equal_the_raw_reference(db: Path) -> None:
    with at(T0 + 2 * H, db) as h:
        (raw,) = h.points("cpu", {"host": "db-1"}, start_ns=T0, end_ns=T0 + 2 * H)
        (roll,) = h.points("cpu", {"host": "db-1"}, start_ns=T0, step_ns=10 * M)
        assert roll.source == "1m" and roll.step_ns == 10 * M
        assert len(roll.samples) == 12
        for s in roll.samples:
            vals = [p.value for p in raw.samples if s.ts_ns <= p.ts_ns < s.ts_ns + 10 * M]
            assert (s.count, s.sum, s.min, s.max, s.last) == (
                len(vals),
                sum(vals),
                min(vals),
                max(vals),
                vals[-1],
            )
        # a step that is not a whole number of windows is rounded up to one
        (odd,) = h.points("cpu", {"host": "db-1"}, start_ns=T0, step_ns=90 * S, source="1m")
        assert odd.step_ns == 2 * M
        (counter,) = h.points("requests", start_ns=T0, step_ns=H)
        assert counter.source == "1h"
        assert [s.increase for s in counter.samples] == [359 * 3.0, 360 * 3.0]  # 1st: baseline
        assert counter.samples[-1].value == 719 * 3.0


def test_forced_source_and_unknown_source(db: Path) -> None:
    with at(T0, db) as h:
        (res,) = h.points("requests", start_ns=T0, source="1h")
        assert res.source == "1h" and res.step_ns == H
        with pytest.raises(HistoryError, match=r"no source '5m'.*raw, 1m, 1h"):
            h.points("requests", start_ns=T0, source="5m")


def test_latest_is_kept_with_the_series(db: Path) -> None:
    with at(T0, db) as h:
        latest = {x.series.tag_dict["host"]: x for x in h.latest("cpu")}
        assert latest["web-2"].value == 719 % 7
        assert latest["web-2"].ts_ns == T0 + 719 * 10 * S
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM points")  # raw points aged out
    conn.commit()
    conn.close()
    with at(T0, db) as h:
        (x,) = h.latest("requests")
        assert (x.value, x.ts_ns) == (719 * 3.0, T0 + 719 * 10 * S)


def test_events_by_type_and_time(db: Path) -> None:
    with at(T0, db) as h:
        assert [e.data["state"] for e in h.events("alert")] == ["resolved", "firing"]
        assert [e.type for e in h.events(newest_first=False)] == [
            "alert",
            "health",
            "span",
            "alert",
        ]
        assert [e.type for e in h.events(["span", "health"], start_ns=T0 + 150 * S)] == ["span"]
        assert [e.type for e in h.events(end_ns=T0 + 2 * M, limit=5)] == ["alert"]
        assert len(h.events(limit=2)) == 2
        assert h.events("span")[0].data["trace_id"] == "a" * 32
        assert h.event_types() == ["alert", "health", "span"]


def test_nan_points_read_back_as_nan(tmp_path: Path) -> None:
    s = HistoryStore(tmp_path / "h.db", [], raw_retention_ns=D, events_retention_ns=D)
    b = MetricBatchBuilder()
    b.add("g", math.nan, MetricKind.GAUGE, "1", {}, T0)
    b.add("g", math.inf, MetricKind.GAUGE, "1", {}, T0 + 1)
    s.write(Batch(b.build()))
    s.close()
    with at(T0, tmp_path / "h.db") as h:
        (r,) = h.points("g", start_ns=T0)
        assert math.isnan(r.samples[0].value) and r.samples[1].value == math.inf


def test_unknown_schema_version_and_foreign_database(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    open_writer(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(HistoryError, match="schema version 99; this revopipe reads version 1"):
        History(path)
    with pytest.raises(HistoryError, match="version 99"):
        HistoryStore(path, [], raw_retention_ns=1, events_retention_ns=1)
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(HistoryError, match="not a revopipe history"):
        HistoryStore(foreign, [], raw_retention_ns=1, events_retention_ns=1)
    with pytest.raises(HistoryError, match="no history database"):
        History(tmp_path / "missing.db")


@pytest.mark.anyio
async def test_reading_while_the_sink_writes(tmp_path: Path) -> None:
    """A reader sees whole batches only (each batch is one transaction), while the writer
    keeps going."""
    sink = make(SqliteSink, {"inputs": ["x"]}, tmp_path)
    await sink.start()
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        with History(tmp_path / "history.db") as h:
            while not stop.is_set():
                res = h.points("n", start_ns=0, source="raw")
                seen.append(len(res[0].samples) if res else 0)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, read)
            for i in range(60):
                b = MetricBatchBuilder()
                for j in range(50):
                    b.add("n", float(i * 50 + j), MetricKind.GAUGE, "1", {}, T0 + i * S + j)
                await sink.write(Batch(b.build()))
            stop.set()
    finally:
        await sink.stop()
    assert seen and all(n % 50 == 0 for n in seen)
    assert max(seen) <= 3000
