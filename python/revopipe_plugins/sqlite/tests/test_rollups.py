"""Raw points and rollups written by the store against a simple Python reference
(hypothesis-generated batches: out-of-order points, shared timestamps, NaN and infinities,
counter resets, writer restarts), and histogram rollups whose percentiles must equal an
aggregator's over the union of the values."""

from __future__ import annotations

import math
import random
import sqlite3
import tempfile
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revopipe import _core
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Health, HealthStatus, HistogramSnapshot, MetricKind
from revopipe_plugins.sqlite.config import Tier
from revopipe_plugins.sqlite.query import History, HistoryError
from revopipe_plugins.sqlite.store import HistoryStore

S = 1_000_000_000
T0 = 1_800_000_000 * S  # a whole number of minutes and hours
TIERS = [Tier(10 * S, 10**18), Tier(60 * S, 10**18)]
SERIES = [
    ("c", MetricKind.COUNTER, (("host", "a"),)),
    ("g", MetricKind.GAUGE, (("host", "a"),)),
    ("g", MetricKind.GAUGE, (("host", "b"),)),
]


def store(path: Path, tiers: list[Tier] = TIERS) -> HistoryStore:
    return HistoryStore(path, tiers, raw_retention_ns=10**18, events_retention_ns=10**18)


def batch_of(points: list[tuple[int, int, float]]) -> Batch:
    b = MetricBatchBuilder()
    for s, t, v in points:
        name, kind, tags = SERIES[s]
        b.add(name, v, kind, "1", tags, t)
    return Batch(b.build())


def reference(batches: list[list[tuple[int, int, float]]], window: int) -> dict[Any, list[Any]]:
    """count, sum, min, max, last, increase per (series, window start): the documented
    rules, point by point in arrival order."""
    base: dict[int, tuple[int, float]] = {}
    out: dict[tuple[int, int], list[Any]] = {}
    for points in batches:
        for s, t, v in points:
            if not math.isfinite(v):
                continue
            counter = SERIES[s][1] is MetricKind.COUNTER
            inc: float | None = None
            prev = base.get(s)
            if prev is None or t >= prev[0]:
                if counter:
                    inc = 0.0 if prev is None else (v - prev[1] if v >= prev[1] else v)
                base[s] = (t, v)
            elif counter:
                inc = 0.0
            key = (s, t - t % window)
            w = out.get(key)
            if w is None:
                out[key] = [1, v, v, v, t, v, inc]
                continue
            w[0] += 1
            w[1] += v
            w[2] = min(w[2], v)
            w[3] = max(w[3], v)
            if t >= w[4]:
                w[4], w[5] = t, v
            if inc is not None:
                w[6] = inc if w[6] is None else w[6] + inc
    return {k: [c, s_, lo, hi, last, inc] for k, (c, s_, lo, hi, _, last, inc) in out.items()}


def stored(path: Path, window: int) -> dict[Any, list[Any]]:
    conn = sqlite3.connect(path)
    ids = {
        (name, tags): sid for sid, name, tags in conn.execute("SELECT id, name, tags FROM series")
    }
    index = {}
    for i, (name, _, tags) in enumerate(SERIES):
        key = (name, "{" + ",".join(f'"{k}":"{v}"' for k, v in tags) + "}")
        if key in ids:
            index[ids[key]] = i
    rows = conn.execute(
        "SELECT series_id, start_ns, count, sum, min, max, last, increase FROM rollups "
        "WHERE window_ns = ?",
        (window,),
    ).fetchall()
    conn.close()
    return {(index[r[0]], r[1]): list(r[2:]) for r in rows}


def raw(path: Path) -> dict[int, list[float | None]]:
    """Each series' values in (timestamp, seq) order."""
    conn = sqlite3.connect(path)
    out: dict[int, list[float | None]] = {}
    rows = conn.execute(
        "SELECT s.name, s.tags, p.value FROM points p JOIN series s ON s.id = p.series_id "
        "ORDER BY p.series_id, p.ts_ns, p.seq"
    )
    names = {
        (n, "{" + ",".join(f'"{k}":"{v}"' for k, v in t) + "}"): i
        for i, (n, _, t) in enumerate(SERIES)
    }
    for name, tags, value in rows:
        out.setdefault(names[(name, tags)], []).append(value)
    conn.close()
    return out


values = st.one_of(
    st.integers(-50, 1000).map(float),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
point = st.tuples(
    st.integers(0, len(SERIES) - 1),
    st.integers(0, 200).map(lambda x: T0 + x * S // 2),  # many shared timestamps
    values,
)
batches_st = st.lists(
    st.tuples(st.lists(point, min_size=1, max_size=25), st.booleans()), min_size=1, max_size=8
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batches_st)
def test_rollups_match_reference(data: list[tuple[list[tuple[int, int, float]], bool]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.db"
        s = store(path)
        sent = []
        for points, reopen in data:
            if reopen:  # a restart: the writer's memory is rebuilt from the database
                s.close()
                s = store(path)
            s.write(batch_of(points))
            sent.append(points)
        s.close()
        for tier in TIERS:
            want = reference(sent, tier.window_ns)
            got = stored(path, tier.window_ns)
            assert got == want, f"tier {tier.label}"
        # raw: every point, in arrival order among equal timestamps (NaN read as NULL)
        expected: dict[int, list[tuple[int, int, float | None]]] = {}
        n = 0
        for points in sent:
            for s_, t, v in points:
                expected.setdefault(s_, []).append((t, n, None if math.isnan(v) else v))
                n += 1
        assert raw(path) == {k: [v for _, _, v in sorted(x)] for k, x in expected.items()}


def test_late_counter_point_adds_no_increase_and_keeps_the_baseline(tmp_path: Path) -> None:
    s = store(tmp_path / "h.db")
    s.write(batch_of([(0, T0, 10.0), (0, T0 + 20 * S, 30.0)]))
    s.write(batch_of([(0, T0 + 5 * S, 15.0), (0, T0 + 21 * S, 35.0)]))  # 15 is late
    s.close()
    got = stored(tmp_path / "h.db", 10 * S)
    assert got[(0, T0)] == [2, 25.0, 10.0, 15.0, 15.0, 0.0]
    assert got[(0, T0 + 20 * S)] == [2, 65.0, 30.0, 35.0, 35.0, 25.0]  # 30-10, then 35-30


def test_counter_baseline_survives_raw_retention(tmp_path: Path) -> None:
    """Once raw points are gone, a restarted writer takes the counter's last value from
    the finest rollup, so the next increase is not lost or doubled."""
    path = tmp_path / "h.db"
    s = store(path)
    s.write(batch_of([(0, T0, 100.0)]))
    s.conn.execute("DELETE FROM points")
    s.close()
    s = store(path)
    s.write(batch_of([(0, T0 + 61 * S, 130.0)]))
    s.close()
    assert stored(path, 60 * S)[(0, T0 + 60 * S)][-1] == 30.0


# -- histograms -----------------------------------------------------------------------


def snapshots(
    values_by_window: dict[int, list[float]], tags: tuple[tuple[str, str], ...]
) -> list[HistogramSnapshot]:
    """One snapshot per 10 s window, as the `aggregate` processor or `app` source ships."""
    out = []
    for start, vals in values_by_window.items():
        agg = _core.Aggregator(10 * S)
        agg.ingest_values("http.server.request.duration", "s", tags, array("d", vals), start)
        (r,) = agg.flush(0, force=True)
        out.append(HistogramSnapshot.from_core(r, r["start_ns"], r["end_ns"]))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.integers(0, 35).map(lambda i: T0 + i * 10 * S),  # 10 s windows over 6 minutes
        st.lists(st.floats(0.0001, 30.0), min_size=1, max_size=40),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 4),
)
def test_histogram_rollup_percentiles_equal_the_aggregator_over_the_union(
    by_window: dict[int, list[float]], split: int
) -> None:
    qs = [0.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0]
    snaps = snapshots(by_window, (("route", "/a"),))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.db"
        s = store(path)
        for i in range(split):  # over several batches: rollups merge with stored rows
            chunk = snaps[i::split]
            if chunk:
                s.write(Batch(events=tuple(chunk)))
        s.close()
        union = _core.Aggregator(1 << 62, percentiles=qs)
        for vals in by_window.values():
            union.ingest_values("h", "s", (), array("d", vals), 0)
        (want,) = union.flush(0, force=True)
        end = T0 + 360 * S
        with History(path, clock=lambda: end) as h:
            for source in ("raw", "10s", "1m"):
                (got,) = h.percentiles(
                    "http.server.request.duration", start_ns=T0, end_ns=end, qs=qs, source=source
                )
                assert got.source == source
                assert got.count == want["count"]
                assert got.min == want["min"] and got.max == want["max"]
                assert got.sum == pytest.approx(want["sum"], rel=1e-12)
                assert got.percentiles == dict(want["percentiles"]), source


def test_percentiles_over_time_per_window_match_per_window_aggregates(tmp_path: Path) -> None:
    rng = random.Random(3)
    by_window = {T0 + i * 10 * S: [rng.uniform(0.001, 2) for _ in range(50)] for i in range(12)}
    s = store(tmp_path / "h.db")
    s.write(Batch(events=tuple(snapshots(by_window, ()))))
    s.close()
    with History(tmp_path / "h.db", clock=lambda: T0) as h:
        lines = h.percentiles_over_time(
            "http.server.request.duration", start_ns=T0, step_ns=60 * S, qs=[50, 99]
        )
    assert [w.start_ns for w in lines] == [T0, T0 + 60 * S]
    for w in lines:
        agg = _core.Aggregator(1 << 62, percentiles=[50, 99])
        for start, vals in by_window.items():
            if w.start_ns <= start < w.start_ns + 60 * S:
                agg.ingest_values("h", "s", (), array("d", vals), 0)
        (want,) = agg.flush(0, force=True)
        assert w.count == want["count"]
        assert w.percentiles == dict(want["percentiles"])


def test_unreadable_hdr_is_kept_as_an_event_and_the_rest_is_written(tmp_path: Path) -> None:
    good = snapshots({T0: [0.1, 0.2]}, ())[0]
    bad = HistogramSnapshot("bad", "s", T0, T0 + 10 * S, 1, 1.0, 1.0, 1.0, "bm90IGFuIGhkcg==", 1e-6)
    b = MetricBatchBuilder()
    b.add("g", 1.0, MetricKind.GAUGE, "1", {}, T0)
    s = store(tmp_path / "h.db")
    result = s.write(Batch(b.build(), (good, bad)))
    s.close()
    assert (result.points, result.histograms, result.rejected) == (1, 1, 1)
    with History(tmp_path / "h.db", clock=lambda: T0) as h:
        (ev,) = h.events("rejected_histogram_snapshot")
        assert ev.data["name"] == "bad" and ev.data["hdr"] == bad.hdr
        assert h.percentiles("http.server.request.duration", start_ns=T0)[0].count == 2
        assert len(h.points("g", start_ns=T0)) == 1


def test_a_failed_batch_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.db"
    s = store(path)
    s.write(batch_of([(0, T0, 10.0)]))

    def boom(events: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(s, "_write_events", boom)
    metrics = batch_of([(0, T0 + S, 20.0), (1, T0 + S, 5.0)]).metrics
    failing = Batch(metrics, (Health("x", HealthStatus.HEALTHY),))
    with pytest.raises(OSError, match="disk on fire"):
        s.write(failing)
    monkeypatch.undo()
    # the retry of the same batch is written as if the failure never happened
    s.write(failing)
    s.close()
    assert raw(path) == {0: [10.0, 20.0], 1: [5.0]}
    assert stored(path, 60 * S)[(0, T0)] == [2, 30.0, 10.0, 20.0, 20.0, 10.0]
    with History(path, clock=lambda: T0) as h:
        assert len(h.events()) == 1


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HistoryError, match="check that the pipeline's data_dir is writable"):
        store(blocker / "h.db")
