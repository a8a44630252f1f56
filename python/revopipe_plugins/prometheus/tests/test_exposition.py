"""The sink's series store: rendering in both formats parses back (prometheus_client's
parsers) to the values written, histograms from raw rows and from HDR snapshots agree,
exemplars land in their bucket, stale series expire, clashing names are refused."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from revopipe import _core, metrics
from revopipe.batch import MetricBatchBuilder
from revopipe.events import HistogramSnapshot, MetricKind, Tags, make_tags
from revopipe.wire.prometheus import Format, default_buckets, format_le, labels, metric_name
from revopipe_plugins.prometheus.exposition import SELF_METRIC, Exposition

C, G, H, SET = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM, MetricKind.SET
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock | None = None, expire_after: float = 300.0) -> Exposition:
    rejects: list[tuple[str, str]] = []
    exp = Exposition(
        default_buckets,
        expire_after,
        self_labels=(("sink", "prom"),),
        on_reject=lambda name, reason: rejects.append((name, reason)),
        clock=clock or Clock(),
    )
    exp.rejects = rejects  # type: ignore[attr-defined]
    return exp


Row = tuple[str, MetricKind, str, dict[str, str], float]


def write(exp: Exposition, rows: Iterable[Row]) -> int:
    b = MetricBatchBuilder(default_ts=1)
    for name, kind, unit, tags, value in rows:
        b.add(name, value, kind, unit, make_tags(tags))
    return exp.add_metrics(b.build())


def samples(text: str, fmt: Format) -> Samples:
    parse = parse_openmetrics if fmt is Format.OPENMETRICS else parse_text
    out: Samples = {}
    for fam in parse(text):
        for s in fam.samples:
            if s.name == SELF_METRIC:
                continue
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = float(s.value)
    return out


def same(a: Samples, b: Samples) -> bool:
    if a.keys() != b.keys():
        return False
    return all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


# -- round trip ---------------------------------------------------------------------------


def expected_samples(exp: Exposition, rows: list[Row], fmt: Format) -> Samples:
    """A plain reference: last value per Prometheus series for counters and gauges; for
    histograms the count of values at or below each bound of the series (bounds of the unit
    that created it), their sum and count (not in OpenMetrics when the sum is negative or
    NaN). Rows the store refused are left out."""
    out: Samples = {}
    hist: dict[tuple[str, Tags], tuple[tuple[float, ...], list[float]]] = {}
    for name, kind, unit, tags, value in rows:
        if (kind is C and not value >= 0) or (kind is H and math.isnan(value)):
            continue
        if (name, int(kind), unit, make_tags(tags)) not in exp._keys:
            continue
        prom = metric_name(name, unit, kind)
        if kind is H:
            lbls = labels(make_tags(tags), ("le",))
            bounds, values = hist.setdefault((prom, lbls), (default_buckets(unit), []))
            values.append(value)
        else:
            out[(prom, labels(make_tags(tags)))] = value
    for (prom, lbls), (bounds, values) in hist.items():
        for b in (*bounds, math.inf):
            le = (*lbls, ("le", format_le(b)))
            out[(f"{prom}_bucket", tuple(sorted(le)))] = sum(1 for v in values if v <= b)
        total = 0.0
        for v in values:
            total += v
        if fmt is Format.TEXT or total >= 0:
            out[(f"{prom}_sum", lbls)] = total
            out[(f"{prom}_count", lbls)] = len(values)
    return out


names = st.one_of(
    st.sampled_from(["http.server.request.duration", "app.requests", "a.b", "a_b", "x.total"]),
    st.text(max_size=16),
)
units = st.one_of(st.sampled_from(["1", "s", "ms", "By", "{request}", "By/s"]), st.text(max_size=4))
tag_sets = st.dictionaries(
    st.one_of(st.sampled_from(["route", "le", "a.b", "a_b"]), st.text(max_size=6)),
    st.text(max_size=12),
    max_size=3,
)
rows_strategy = st.lists(
    st.tuples(names, st.sampled_from([C, G, H]), units, tag_sets, st.floats()), max_size=25
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows_strategy, min_size=1, max_size=3))
def test_any_rows_render_and_parse_back_to_their_values(batches: list[list[Row]]) -> None:
    exp = store()
    all_rows: list[Row] = []
    for rows in batches:
        refused = write(exp, rows)
        all_rows += rows
        for fmt in (Format.TEXT, Format.OPENMETRICS):
            text = exp.render(fmt).decode()
            assert same(samples(text, fmt), expected_samples(exp, all_rows, fmt)), text
        assert refused == 0 or exp.rejects  # type: ignore[attr-defined]


def test_formats_differ_where_the_specs_do() -> None:
    exp = store()
    write(exp, [("app.requests", C, "{request}", {"route": "/"}, 3.0)])
    text = exp.render(Format.TEXT).decode()
    om = exp.render(Format.OPENMETRICS).decode()
    assert "# TYPE app_requests_total counter\n" in text
    assert 'app_requests_total{route="/"} 3.0\n' in text
    assert "# EOF" not in text
    assert "# TYPE app_requests counter\n" in om  # the family, without _total
    assert 'app_requests_total{route="/"} 3.0\n' in om
    assert om.endswith("# EOF\n")
    assert 'revopipe_prometheus_series{sink="prom"} 1\n' in text


def test_unit_metadata_only_when_the_name_carries_it() -> None:
    exp = store()
    write(
        exp,
        [
            ("lat", H, "s", {}, 0.1),
            ("cpu.time", C, "s", {}, 2.0),
            ("queue", G, "{item}", {}, 1.0),
        ],
    )
    om = exp.render(Format.OPENMETRICS).decode()
    assert "# UNIT lat_seconds seconds\n" in om
    assert "# UNIT cpu_time_seconds seconds\n" in om
    assert "# UNIT queue" not in om
    list(parse_openmetrics(om))  # the OpenMetrics parser checks UNIT against the name


# -- histograms -------------------------------------------------------------------------


def snapshot_of(values: list[float], exemplars: list[float] = ()) -> HistogramSnapshot:  # type: ignore[assignment]
    _core.reset_instruments()
    h = metrics.histogram("http.server.request.duration", "s", {"route": "/users"})
    for v in values:
        h.record(v)
    for v in exemplars:
        h.record_exemplar(v, TRACE, SPAN)
    (reading,) = [r for r in metrics.collect() if r["kind"] == int(H)]
    _core.reset_instruments()
    return HistogramSnapshot.from_core(reading, 0, 1)


def test_snapshots_and_raw_rows_give_the_same_buckets() -> None:
    # values away from the bounds: the HDR histogram keeps 3 significant digits
    values = [0.0012, 0.007, 0.007, 0.03, 0.06, 0.2, 0.2, 0.2, 0.9, 3.3, 42.0]
    by_rows, by_snapshots = store(), store()
    write(
        by_rows, [("http.server.request.duration", H, "s", {"route": "/users"}, v) for v in values]
    )
    assert by_snapshots.add_snapshot(snapshot_of(values[:5]))
    assert by_snapshots.add_snapshot(snapshot_of(values[5:]))  # windows accumulate
    a = samples(by_rows.render(Format.TEXT).decode(), Format.TEXT)
    b = samples(by_snapshots.render(Format.TEXT).decode(), Format.TEXT)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-9), k
    lbl = (("le", "0.01"), ("route", "/users"))
    assert b[("http_server_request_duration_seconds_bucket", lbl)] == 3
    assert b[("http_server_request_duration_seconds_count", (("route", "/users"),))] == 11


def test_custom_bounds_per_unit() -> None:
    exp = Exposition(lambda unit: (1.0, 2.0) if unit == "ms" else default_buckets(unit), 60)
    write(exp, [("db.query", H, "ms", {}, v) for v in (0.5, 1.5, 9.0)])
    got = samples(exp.render(Format.TEXT).decode(), Format.TEXT)
    assert got[("db_query_milliseconds_bucket", (("le", "1.0"),))] == 1
    assert got[("db_query_milliseconds_bucket", (("le", "2.0"),))] == 2
    assert got[("db_query_milliseconds_bucket", (("le", "+Inf"),))] == 3


def test_exemplars_attach_to_their_bucket_in_openmetrics_only() -> None:
    exp = store()
    exp.add_snapshot(snapshot_of([0.02, 0.3], exemplars=[0.07]))
    om = exp.render(Format.OPENMETRICS).decode()
    found = []
    for fam in parse_openmetrics(om):
        for s in fam.samples:
            if s.exemplar is not None:
                found.append((s.labels["le"], s.exemplar))
    assert len(found) == 1
    le, ex = found[0]
    assert le == "0.075"  # 0.05 < 0.07 <= 0.075
    assert ex.labels == {"trace_id": TRACE, "span_id": SPAN}
    assert ex.value == pytest.approx(0.07)
    assert "trace_id" not in exp.render(Format.TEXT).decode()
    list(parse_text(exp.render(Format.TEXT).decode()))


def test_the_latest_exemplar_of_a_bucket_wins() -> None:
    exp = store()
    exp.add_snapshot(snapshot_of([0.02], exemplars=[0.06]))
    exp.add_snapshot(snapshot_of([0.02], exemplars=[0.07]))
    om = exp.render(Format.OPENMETRICS).decode()
    assert om.count("trace_id") == 1
    assert " 0.07 " in om


def test_a_bad_snapshot_raises_and_changes_nothing() -> None:
    exp = store()
    bad = HistogramSnapshot("lat", "s", 0, 1, 3, 1.0, 0.1, 0.5, "not-base64!", 1e-6)
    with pytest.raises(ValueError):
        exp.add_snapshot(bad)
    assert exp.series_count == 0
    assert "lat_seconds" not in exp.render(Format.TEXT).decode()


# -- refusals, expiry, caching ----------------------------------------------------------


def test_sets_and_bad_counter_values_are_refused_with_a_reason() -> None:
    exp = store()
    refused = write(
        exp,
        [
            ("users.seen", SET, "1", {}, 42.0),
            ("app.requests", C, "1", {}, -1.0),
            ("app.requests", C, "1", {}, math.nan),
            ("lat", H, "s", {}, math.nan),
            ("ok", G, "1", {}, math.nan),  # a gauge may be NaN
        ],
    )
    assert refused == 4
    reasons = dict(exp.rejects)  # type: ignore[attr-defined]
    assert "aggregate" in reasons["users.seen"]
    assert "negative or NaN" in reasons["app.requests"]
    got = samples(exp.render(Format.TEXT).decode(), Format.TEXT)
    assert list(got) == [("ok", ())]


def test_names_that_clash_in_openmetrics_are_refused_first_come_first_served() -> None:
    exp = store()
    refused = write(
        exp,
        [
            ("jobs", G, "1", {}, 1.0),  # family "jobs"
            ("jobs", C, "1", {}, 5.0),  # OpenMetrics family "jobs" again
            ("lat", H, "s", {}, 0.1),  # claims lat_seconds_count
            ("lat.seconds.count", G, "1", {}, 3.0),
        ],
    )
    assert refused == 2
    ((_, reason), *_) = exp.rejects  # type: ignore[attr-defined]
    assert "clashes with the gauge jobs" in reason
    list(parse_openmetrics(exp.render(Format.OPENMETRICS).decode()))


def test_stale_series_expire_and_free_their_names() -> None:
    clock = Clock()
    exp = store(clock, expire_after=300)
    write(exp, [("stale", G, "1", {"i": "1"}, 1.0), ("kept", G, "1", {}, 2.0)])
    clock.now += 200
    write(exp, [("kept", G, "1", {}, 3.0)])
    clock.now += 150  # stale: 350 s without update, kept: 150 s
    text = exp.render(Format.TEXT).decode()
    assert "stale" not in text
    assert "kept 3.0" in text
    assert exp.series_count == 1
    # the gauge "stale" is gone, so a counter of that family name is welcome now
    assert write(exp, [("stale", C, "1", {}, 7.0)]) == 0
    assert "stale_total 7.0" in exp.render(Format.TEXT).decode()


def test_rendering_reflects_every_change_after_caching() -> None:
    exp = store()
    write(exp, [("g", G, "1", {"i": str(i)}, float(i)) for i in range(3)])
    first = exp.render(Format.TEXT).decode()
    assert exp.render(Format.TEXT).decode() == first  # from the cache
    write(exp, [("g", G, "1", {"i": "1"}, 10.0)])
    got = samples(exp.render(Format.TEXT).decode(), Format.TEXT)
    assert got == {("g", (("i", "0"),)): 0.0, ("g", (("i", "1"),)): 10.0, ("g", (("i", "2"),)): 2.0}
    om_before = exp.render(Format.OPENMETRICS).decode()
    exp.add_snapshot(snapshot_of([0.1]))
    assert exp.render(Format.OPENMETRICS).decode() != om_before


def test_two_names_for_one_series_share_it() -> None:
    exp = store()
    write(exp, [("a.b", G, "1", {}, 1.0), ("a_b", G, "1", {}, 2.0)])
    assert samples(exp.render(Format.TEXT).decode(), Format.TEXT) == {("a_b", ()): 2.0}
    assert exp.series_count == 1


def _kinds(text: str) -> dict[str, Any]:
    return {f.name: f.type for f in parse_text(text)}


def test_types_are_declared() -> None:
    exp = store()
    write(exp, [("c", C, "1", {}, 1.0), ("g", G, "1", {}, 1.0), ("h", H, "s", {}, 1.0)])
    assert _kinds(exp.render(Format.TEXT).decode()) == {
        "c": "counter",
        "g": "gauge",
        "h_seconds": "histogram",
        SELF_METRIC: "gauge",
    }
