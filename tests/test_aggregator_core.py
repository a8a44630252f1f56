"""revopipe._core.Aggregator: windowed aggregation through the binding."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe._core import Aggregator

hdrh = pytest.importorskip("hdrh.histogram")

S = 1_000_000_000
COUNTER, GAUGE, HISTOGRAM, SET = 0, 1, 2, 3
RESOLUTION = {"s": 1e-6, "ms": 1e-3, "us": 1.0, "ns": 1.0, "By": 1.0, "1": 1e-6}


def resolution(unit: str) -> float:
    return RESOLUTION.get(unit, 1e-3)


def recorded(value: float, unit: str) -> int:
    scaled = value / resolution(unit)
    return 0 if not scaled > 0 else math.floor(scaled + 0.5) if scaled < 2**52 else int(scaled)


def one(agg: Aggregator, name: str, kind: int, value: float, ts: int, tags=(), unit="ms") -> None:
    agg.ingest([name], bytes([kind]), array("d", [value]), [unit], array("q", [ts]), [tuple(tags)])


values_st = st.lists(
    st.one_of(
        st.floats(0, 1),
        st.floats(0, 1000),
        st.floats(0, 1e9),
        st.integers(0, 100).map(float),
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(
    values=values_st, sigfig=st.integers(1, 4), unit=st.sampled_from(["ms", "s", "ns", "1", "x"])
)
def test_percentiles_and_exact_stats(values: list[float], sigfig: int, unit: str) -> None:
    qs = (0, 1, 25, 50, 90, 99, 99.9, 100)
    agg = Aggregator(10 * S, percentiles=qs, significant_digits=sigfig)
    agg.ingest_values("h", unit, (("k", "v"),), array("d", values), 3 * S)
    (r,) = agg.flush(0, force=True)
    ref = sorted(values)
    assert r["count"] == len(values)
    assert r["min"] == ref[0]
    assert r["max"] == ref[-1]
    assert r["sum"] == pytest.approx(math.fsum(values), rel=1e-12, abs=1e-9)
    assert r["kind"] == HISTOGRAM and r["tags"] == (("k", "v"),)
    assert (r["start_ns"], r["end_ns"]) == (0, 10 * S)
    rel = 10.0**-sigfig
    for q, got in r["percentiles"]:
        rank = max(1, math.ceil(q / 100 * len(values)))
        want = ref[rank - 1]
        assert abs(got - want) <= want * rel + resolution(unit), (q, got, want)


@settings(max_examples=40, deadline=None)
@given(values=values_st, unit=st.sampled_from(["ms", "s", "By"]))
def test_hdr_decodes_with_the_python_package(values: list[float], unit: str) -> None:
    agg = Aggregator(10 * S, percentiles=(1, 50, 90, 99, 99.9, 100))
    agg.ingest_values("h", unit, (), array("d", values), 0)
    (r,) = agg.flush(0, force=True)
    assert r["resolution"] == resolution(unit)
    h = hdrh.HdrHistogram.decode(r["hdr"])
    assert h.get_total_count() == len(values)
    res = resolution(unit)
    for q, got in r["percentiles"]:
        # The Rust reader targets ceil(q * n) as the rank, Python's round(q * n): ask Python
        # for a percentile that lands on the same rank.
        rank = max(1, math.ceil(q / 100 * len(values)))
        p = (rank - 0.25) / len(values) * 100
        assert h.get_value_at_percentile(p) * res == got
    # And the recorded integers land in the buckets of the raw values.
    assert h.get_max_value() == h.get_highest_equivalent_value(
        max(recorded(v, unit) for v in values)
    )


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(values_st, min_size=1, max_size=5))
def test_merging_snapshots_equals_the_union(parts: list[list[float]]) -> None:
    tags = (("host", "a"),)
    union = Aggregator(10 * S)
    merged = Aggregator(10 * S)
    for i, part in enumerate(parts):
        union.ingest_values("lat", "ms", tags, array("d", part), 20 * S + i)
        single = Aggregator(10 * S)
        single.ingest_values("lat", "ms", tags, array("d", part), 25 * S)
        (snap,) = single.flush(0, force=True)
        merged.merge_snapshot(
            "lat",
            "ms",
            tags,
            snap["start_ns"],
            snap["count"],
            snap["sum"],
            snap["min"],
            snap["max"],
            snap["hdr"],
        )
    (u,) = union.flush(0, force=True)
    (m,) = merged.flush(0, force=True)
    for key in ("count", "min", "max", "percentiles", "start_ns", "tags"):
        assert u[key] == m[key], key
    assert m["sum"] == pytest.approx(u["sum"], rel=1e-12, abs=1e-12)
    hu, hm = hdrh.HdrHistogram.decode(u["hdr"]), hdrh.HdrHistogram.decode(m["hdr"])
    assert hu.get_total_count() == hm.get_total_count()
    assert [
        (v.value_iterated_to, v.count_at_value_iterated_to) for v in hu.get_recorded_iterator()
    ] == [(v.value_iterated_to, v.count_at_value_iterated_to) for v in hm.get_recorded_iterator()]


def test_window_boundary() -> None:
    agg = Aggregator(10 * S)
    one(agg, "g", GAUGE, 1.0, 10 * S - 1)
    one(agg, "g", GAUGE, 2.0, 10 * S)
    one(agg, "g", GAUGE, 3.0, -1)
    out = agg.flush(30 * S)
    assert [(r["start_ns"], r["end_ns"], r["last"]) for r in out] == [
        (-10 * S, 0, 3.0),
        (0, 10 * S, 1.0),
        (10 * S, 20 * S, 2.0),
    ]


def test_grace_and_empty_windows() -> None:
    agg = Aggregator(10 * S, grace_ns=2 * S)
    one(agg, "g", GAUGE, 1.0, 5 * S)
    one(agg, "g", GAUGE, 2.0, 35 * S)
    assert agg.flush(11 * S) == []
    assert [r["start_ns"] for r in agg.flush(12 * S)] == [0]
    assert agg.flush(33 * S) == []  # [10, 20) and [20, 30) had nothing
    assert [r["start_ns"] for r in agg.flush(10**6 * S)] == [30 * S]


def test_late_drop_and_current() -> None:
    drop = Aggregator(10 * S)
    one(drop, "g", GAUGE, 1.0, 5 * S)
    drop.flush(20 * S)
    one(drop, "g", GAUGE, 2.0, 15 * S)  # its window [10, 20) is closed, though empty
    assert drop.late_events == 1
    one(drop, "g", GAUGE, 3.0, 10**9 * S)  # the far future is fine
    assert drop.late_events == 1
    assert [r["last"] for r in drop.flush(0, force=True)] == [3.0]

    cur = Aggregator(10 * S, late_policy="current")
    one(cur, "g", GAUGE, 1.0, 5 * S)
    cur.flush(10 * S)
    one(cur, "g", GAUGE, 2.0, 3 * S)  # no open window: the window of now
    one(cur, "g", GAUGE, 3.0, 45 * S)
    one(cur, "h", HISTOGRAM, 7.0, 1)  # the newest open window
    assert cur.late_events == 2
    out = cur.flush(0, force=True)
    assert [(r["name"], r["start_ns"], r["count"]) for r in out] == [
        ("g", 10 * S, 1),
        ("g", 40 * S, 1),
        ("h", 40 * S, 1),
    ]


def test_counter_reset_and_rate() -> None:
    agg = Aggregator(10 * S)
    for v, t in [(100.0, 1), (105.0, 2), (115.0, 3), (3.0, 4), (5.0, 5)]:
        one(agg, "c", COUNTER, v, t * S, unit="1")
    (r,) = agg.flush(10 * S)
    assert (r["increase"], r["rate"], r["last"], r["count"]) == (20.0, 2.0, 5.0, 5)
    assert r["percentiles"] == [] and r["hdr"] is None and r["distinct"] is None
    one(agg, "c", COUNTER, 9.0, 11 * S, unit="1")
    (r,) = agg.flush(20 * S)
    assert r["increase"] == 4.0


def test_gauge_and_set() -> None:
    agg = Aggregator(10 * S)
    names = ["g", "g", "g", "s", "s", "s", "s", "s"]
    kinds = bytes([GAUGE] * 3 + [SET] * 5)
    values = array("d", [3.0, 1.0, 4.0, 1.0, 2.0, 2.0, 0.0, -0.0])
    agg.ingest(names, kinds, values, [""] * 8, array("q", [S] * 8), [()] * 8)
    g, s = agg.flush(10 * S)
    assert (g["count"], g["sum"], g["min"], g["max"], g["last"]) == (3, 8.0, 1.0, 4.0, 4.0)
    assert (s["distinct"], s["count"]) == (3, 5)


def test_cardinality_overflow() -> None:
    agg = Aggregator(10 * S, max_series_per_metric=3)
    for i in range(10):
        one(agg, "m", HISTOGRAM, float(i), 0, (("id", str(i)),))
    agg.ingest_values("m", "ms", (("id", "new"),), array("d", [1.0, 2.0]), 0)
    assert agg.overflow_events == 9
    assert agg.series_count == 4
    out = agg.flush(0, force=True)
    overflow = [r for r in out if r["tags"] == (("revopipe.overflow", "true"),)]
    assert len(overflow) == 1 and overflow[0]["count"] == 9
    assert sum(r["count"] for r in out) == 12


def test_errors() -> None:
    with pytest.raises(ValueError, match="late_policy"):
        Aggregator(S, late_policy="later")
    with pytest.raises(ValueError, match="significant_digits"):
        Aggregator(S, significant_digits=0)
    with pytest.raises(ValueError, match="significant_digits"):
        Aggregator(S, significant_digits=6)
    with pytest.raises(ValueError, match="percentiles"):
        Aggregator(S, percentiles=(50, 101))
    with pytest.raises(ValueError, match="window_ns"):
        Aggregator(0)
    agg = Aggregator(S)
    with pytest.raises(ValueError, match="base64"):
        agg.merge_snapshot("h", "ms", (), 0, 1, 1.0, 1.0, 1.0, "not base64!")
    with pytest.raises(ValueError, match="HdrHistogram"):
        agg.merge_snapshot("h", "ms", (), 0, 1, 1.0, 1.0, 1.0, "AAAAAAAA")
    with pytest.raises(ValueError, match="tags"):
        agg.ingest(["a"], bytes([1]), array("d", [1.0]), [""], array("q", [0]), [])
    with pytest.raises(ValueError, match="kind"):
        agg.ingest(["a"], bytes([9]), array("d", [1.0]), [""], array("q", [0]), [()])
