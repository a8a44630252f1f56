"""revopipe._core instruments: Counter, Gauge, Histogram and the global registry."""

from __future__ import annotations

import math
import threading

import pytest

from revopipe import _core

THREADS = 8
PER_THREAD = 50_000


@pytest.fixture(autouse=True)
def fresh_registry():
    _core.reset_instruments()
    yield
    _core.reset_instruments()


def by_name(snapshots, name):
    found = [s for s in snapshots if s["name"] == name]
    assert len(found) <= 1
    return found[0] if found else None


def run_threads(target):
    start = threading.Barrier(THREADS)

    def worker(i):
        start.wait()
        target(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_same_name_and_tags_share_state():
    a = _core.counter("requests", "1", (("route", "/"),))
    b = _core.counter("requests", "1", (("route", "/"),))
    other = _core.counter("requests", "1", (("route", "/x"),))
    a.inc()
    b.inc(2)
    other.inc(10)
    assert a.value == b.value == 3.0
    assert other.value == 10.0
    assert (a.name, a.unit, a.tags) == ("requests", "1", (("route", "/"),))
    h1 = _core.histogram("latency", "s", (("a", "1"),))
    h2 = _core.histogram("latency", "s", (("a", "1"),))
    h1.record(0.1)
    assert h2.count == 1
    g1 = _core.gauge("queue", "{item}")
    g2 = _core.gauge("queue", "{item}")
    g1.set(4)
    assert g2.value == 4.0


def test_tags_are_sorted_defensively():
    a = _core.counter("c", "1", (("b", "2"), ("a", "1")))
    b = _core.counter("c", "1", (("a", "1"), ("b", "2")))
    a.inc()
    assert b.value == 1.0
    assert a.tags == (("a", "1"), ("b", "2"))


def test_defaults():
    c = _core.counter("c")
    g = _core.gauge("g")
    h = _core.histogram("h")
    assert (c.unit, c.tags) == ("1", ())
    assert g.unit == "1"
    assert (h.unit, h.significant_digits) == ("s", 3)
    assert "Counter(name='c'" in repr(c)


@pytest.mark.parametrize(
    ("make_first", "make_second"),
    [
        (lambda: _core.counter("x"), lambda: _core.gauge("x")),
        (lambda: _core.counter("x"), lambda: _core.histogram("x", "1")),
        (lambda: _core.gauge("x"), lambda: _core.counter("x")),
        (lambda: _core.counter("x", "By"), lambda: _core.counter("x", "1")),
        (lambda: _core.histogram("x", "s"), lambda: _core.histogram("x", "ms")),
    ],
)
def test_kind_or_unit_conflict_is_value_error(make_first, make_second):
    make_first()
    with pytest.raises(ValueError, match="already a"):
        make_second()


def test_invalid_arguments():
    c = _core.counter("c")
    for bad in (-1, -0.001, math.nan, math.inf):
        with pytest.raises(ValueError):
            c.inc(bad)
    assert c.value == 0.0
    c.inc(0)
    c.inc(0.5)
    assert c.value == 0.5
    for digits in (0, 6, -1, 1000):
        with pytest.raises(ValueError, match="significant_digits"):
            _core.histogram("h", significant_digits=digits)
    with pytest.raises(TypeError):
        c.inc("1")
    with pytest.raises(TypeError):
        _core.counter("c", "1", "ab")


def test_gauge_set_inc_dec():
    g = _core.gauge("g")
    g.set(10)
    g.inc()
    g.inc(2.5)
    g.dec()
    g.dec(0.5)
    assert g.value == 12.0


def test_exact_under_threads():
    c = _core.counter("c")
    f = _core.counter("f")
    g = _core.gauge("g")
    h = _core.histogram("h", "ms")

    def work(i):
        inc, inc_f, g_inc, record = c.inc, f.inc, g.inc, h.record
        for j in range(PER_THREAD):
            inc()
            inc_f(0.5)
            g_inc()
            record(j % 100)

    run_threads(work)
    total = THREADS * PER_THREAD
    assert c.value == total
    assert f.value == total / 2
    assert g.value == total
    assert h.count == total
    snap = by_name(_core.collect_instruments(), "h")
    assert snap["count"] == total
    assert snap["sum"] == THREADS * (PER_THREAD // 100) * sum(range(100))
    assert (snap["min"], snap["max"]) == (0.0, 99.0)


def test_threads_asking_for_the_same_instrument_share_it():
    def work(i):
        c = _core.counter("shared", "1", (("k", "v"),))
        h = _core.histogram("lat", "s", (("k", "v"),))
        for _ in range(PER_THREAD // 10):
            c.inc()
            h.record(0.001)

    run_threads(work)
    snaps = _core.collect_instruments()
    assert len(snaps) == 2
    assert by_name(snaps, "shared")["value"] == THREADS * PER_THREAD // 10
    assert by_name(snaps, "lat")["count"] == THREADS * PER_THREAD // 10


def test_collect_cumulative_counters_and_delta_histograms():
    c = _core.counter("requests", "{request}", (("route", "/"),))
    g = _core.gauge("inflight")
    h = _core.histogram("latency", "s", (("route", "/"),))
    c.inc(3)
    g.set(2)
    for v in (0.25, 0.5, 2.0):
        h.record(v)

    first = _core.collect_instruments()
    assert [s["kind"] for s in first] == [0, 1, 2]
    assert first[0] == {
        "kind": 0,
        "name": "requests",
        "unit": "{request}",
        "tags": (("route", "/"),),
        "value": 3.0,
    }
    assert first[1]["value"] == 2.0
    hist = first[2]
    assert set(hist) == {
        "kind",
        "name",
        "unit",
        "tags",
        "count",
        "sum",
        "min",
        "max",
        "hdr",
        "resolution",
        "exemplars",
    }
    assert (hist["count"], hist["sum"], hist["min"], hist["max"]) == (3, 2.75, 0.25, 2.0)
    assert isinstance(hist["hdr"], str)
    assert hist["resolution"] > 0

    c.inc()
    g.dec()
    second = _core.collect_instruments()
    assert [s["name"] for s in second] == ["requests", "inflight"]
    assert second[0]["value"] == 4.0
    assert second[1]["value"] == 1.0

    h.record(1.0)
    third = by_name(_core.collect_instruments(), "latency")
    assert (third["count"], third["sum"], third["min"], third["max"]) == (1, 1.0, 1.0, 1.0)
    assert h.count == 4


def test_hdr_decodes_with_python_hdrhistogram():
    histogram_module = pytest.importorskip("hdrh.histogram")  # PyPI package `hdrhistogram`
    h = _core.histogram("latency", "s")
    values = [0.001 * i for i in range(1, 1001)]
    for v in values:
        h.record(v)
    snap = by_name(_core.collect_instruments(), "latency")
    decoded = histogram_module.HdrHistogram.decode(snap["hdr"])
    assert decoded.get_total_count() == snap["count"] == len(values)
    res = snap["resolution"]
    p50 = decoded.get_value_at_percentile(50) * res
    p99 = decoded.get_value_at_percentile(99) * res
    assert p50 == pytest.approx(0.5, rel=0.01)
    assert p99 == pytest.approx(0.99, rel=0.01)
    assert decoded.get_max_value() * res == pytest.approx(1.0, rel=0.01)


def test_reset_drops_instruments():
    c = _core.counter("c")
    c.inc()
    _core.reset_instruments()
    assert _core.collect_instruments() == []
    g = _core.gauge("c")  # no conflict any more
    c.inc()  # the old handle still works, detached
    assert c.value == 2.0
    assert g.value == 0.0
    assert [s["kind"] for s in _core.collect_instruments()] == [1]


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_exemplars_reach_the_snapshot():
    h = _core.histogram("ex.lat", "s")
    h.record_exemplar(0.25, TRACE, SPAN)
    h.record_exemplar(0.26, TRACE, "00f067aa0ba902b8")  # same power-of-two range: replaces
    h.record(0.001)
    (r,) = [x for x in _core.collect_instruments() if x["name"] == "ex.lat"]
    assert r["count"] == 3
    ((value, trace_id, span_id, ts),) = r["exemplars"]
    assert (value, trace_id, span_id) == (0.26, TRACE, "00f067aa0ba902b8")
    assert ts > 1_600_000_000 * 10**9


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [("xyz", SPAN), ("0" * 32, SPAN), (TRACE.upper(), SPAN), (TRACE, "0" * 16), (TRACE, "")],
)
def test_bad_exemplar_ids_are_refused_and_record_nothing(trace_id, span_id):
    h = _core.histogram("ex.bad", "s")
    with pytest.raises(ValueError, match=r"ex\.bad.*W3C trace id"):
        h.record_exemplar(0.1, trace_id, span_id)
    assert h.count == 0
