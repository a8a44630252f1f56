"""revopipe.wire.otlp: the mapping both ways, OTLP/JSON's hex ids, malformed bodies."""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import HistogramSnapshot, MetricKind, Span, make_tags
from revopipe.wire.otlp import (
    OtlpDecodeError,
    OtlpDecoder,
    OtlpEncoder,
    export_response,
    parse_json,
    parse_protobuf,
    parse_status,
    status_body,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def one_metric(req: ExportMetricsServiceRequest) -> metrics_pb2.Metric:
    [rm] = req.resource_metrics
    [sm] = rm.scope_metrics
    [m] = sm.metrics
    return m


def test_raw_histogram_rows_become_one_delta_point_per_series() -> None:
    b = MetricBatchBuilder()
    for ts, v in ((30, 0.2), (10, 0.004), (20, 7.0), (25, math.nan)):
        b.add("lat", v, MetricKind.HISTOGRAM, "s", {"r": "/"}, ts)
    enc = OtlpEncoder(bounds={"s": [0.005, 0.5, 5.0]})
    encoded = enc.metrics(Batch(b.build()))
    assert encoded is not None and encoded.points == 1
    [p] = one_metric(encoded.request).histogram.data_points
    assert (p.start_time_unix_nano, p.time_unix_nano, p.count) == (10, 30, 3)
    assert (p.sum, p.min, p.max) == (pytest.approx(7.204), 0.004, 7.0)
    assert list(p.explicit_bounds) == [0.005, 0.5, 5.0]
    assert list(p.bucket_counts) == [1, 1, 0, 1]


def test_set_rows_become_a_gauge_of_distinct_members() -> None:
    b = MetricBatchBuilder(default_ts=7)
    for v in (1.0, 2.0, 2.0, 0.0, -0.0):
        b.add("users", v, MetricKind.SET)
    encoded = OtlpEncoder().metrics(Batch(b.build()))
    assert encoded is not None
    [p] = one_metric(encoded.request).gauge.data_points
    assert (p.as_double, p.time_unix_nano) == (3.0, 7)


def test_resource_and_scope_tags_group_the_rows() -> None:
    b = MetricBatchBuilder(default_ts=1)
    b.add("g", 1, tags={"service.name": "a", "k": "1"})
    b.add("g", 2, tags={"service.name": "b", "k": "1", "otel.scope.name": "lib"})
    enc = OtlpEncoder(resource={"service.name": "default", "region": "eu"})
    encoded = enc.metrics(Batch(b.build()))
    assert encoded is not None
    groups = [
        (
            {kv.key: kv.value.string_value for kv in rm.resource.attributes},
            rm.scope_metrics[0].scope.name,
            [kv.key for kv in rm.scope_metrics[0].metrics[0].gauge.data_points[0].attributes],
        )
        for rm in encoded.request.resource_metrics
    ]
    assert groups == [
        ({"service.name": "a", "region": "eu"}, "revopipe", ["k"]),
        ({"service.name": "b", "region": "eu"}, "lib", ["k"]),
    ]


def test_unreadable_hdr_exports_the_point_without_buckets() -> None:
    snap = HistogramSnapshot("h", "s", 1, 2, 3, 0.6, 0.1, 0.3, "bm90IGhkcg==", 1e-6)
    encoded = OtlpEncoder().metrics(Batch(events=(snap,)))
    assert encoded is not None
    [p] = one_metric(encoded.request).histogram.data_points
    assert (p.count, p.sum, list(p.bucket_counts)) == (3, 0.6, [])
    assert encoded.warnings and "HDR" in encoded.warnings[0]


def test_spans_with_bad_ids_are_reported_not_sent() -> None:
    good = Span("a", TRACE, SPAN, 1, 2)
    bad = Span("b", "xyz", SPAN, 1, 2)
    encoded = OtlpEncoder().spans(Batch(events=(good, bad)))
    assert encoded is not None and encoded.spans == 1
    assert len(encoded.rejected) == 1 and "not hexadecimal" in encoded.rejected[0]
    assert OtlpEncoder().spans(Batch()) is None


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def test_decoder_attribute_types_summary_exponential_and_skips() -> None:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(
        [
            kv("i", int_value=3),
            kv("b", bool_value=True),
            kv("d", double_value=0.5),
            kv("a", array_value=ArrayValue(values=[AnyValue(int_value=1)])),
        ]
    )
    sm = rm.scope_metrics.add()
    m = sm.metrics.add(name="rpc", unit="s")
    m.summary.data_points.add(time_unix_nano=5, count=10, sum=2.0, quantile_values=[
        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.4)
    ])  # fmt: skip
    m = sm.metrics.add(name="exp", unit="s")
    m.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.exponential_histogram.data_points.add(time_unix_nano=5, count=4, sum=1.0, scale=2)
    m = sm.metrics.add(name="stale")
    m.gauge.data_points.add(time_unix_nano=5, as_double=1, flags=1)
    m = sm.metrics.add(name="")
    m.gauge.data_points.add(time_unix_nano=5, as_double=1)
    m = sm.metrics.add(name="bad.hist")
    m.histogram.data_points.add(count=1, explicit_bounds=[1.0], bucket_counts=[1])
    d = OtlpDecoder().metrics(req)
    rows = {(r.name, r.tag_dict.get("quantile")): r for r in d.metrics}
    assert set(rows) == {
        ("rpc.count", None),
        ("rpc.sum", None),
        ("rpc", "0.99"),
        ("exp.count", None),
        ("exp.sum", None),
    }
    assert rows[("rpc", "0.99")].kind is MetricKind.GAUGE and rows[("rpc", "0.99")].value == 0.4
    assert rows[("exp.count", None)].value == 4.0
    assert rows[("rpc.count", None)].tag_dict == {"i": "3", "b": "true", "d": "0.5", "a": "[1]"}
    assert d.rejected == 2
    assert any("no name" in e for e in d.errors) and any("bucket counts" in e for e in d.errors)


def test_cumulative_counter_started_after_the_decoder_gets_a_zero_baseline() -> None:
    dec = OtlpDecoder(start_ns=1_000)
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add(name="c")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.sum.data_points.add(start_time_unix_nano=2_000, time_unix_nano=3_000, as_int=5)
    m.sum.data_points.add(
        start_time_unix_nano=500,
        time_unix_nano=3_000,
        as_int=9,
        attributes=[kv("x", string_value="old")],
    )
    d = dec.metrics(req)
    got = [(r.value, r.tag_dict.get("x")) for r in d.metrics]
    assert got == [(0.0, None), (5.0, None), (9.0, "old")]
    dec.commit(d)
    # seen before: no second baseline
    assert [r.value for r in dec.metrics(req).metrics] == [5.0, 9.0]


def test_json_hex_ids_in_spans_and_exemplars() -> None:
    traces = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE.upper(),
                                "spanId": SPAN,
                                "name": "x",
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "kind": 2,
                                "links": [{"traceId": TRACE, "spanId": SPAN}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    req = parse_json(json.dumps(traces).encode(), "traces")
    [span] = OtlpDecoder().spans(req).spans
    assert (span.trace_id, span.span_id, span.end_ns, dict(span.attributes)["span.kind"]) == (
        TRACE,
        SPAN,
        2,
        "server",
    )
    metrics = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "h",
                                "histogram": {
                                    "dataPoints": [
                                        {
                                            "count": "1",
                                            "exemplars": [
                                                {"traceId": TRACE, "spanId": SPAN, "asDouble": 1}
                                            ],
                                        }
                                    ]
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    mreq = parse_json(json.dumps(metrics), "metrics")
    ex = mreq.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0].exemplars[0]
    assert ex.trace_id.hex() == TRACE


def test_replies() -> None:
    assert ExportMetricsServiceResponse.FromString(export_response("metrics", 0, "", False)) == (
        ExportMetricsServiceResponse()
    )
    ps = ExportTraceServiceResponse.FromString(export_response("traces", 2, "bad ids", False))
    assert (ps.partial_success.rejected_spans, ps.partial_success.error_message) == (2, "bad ids")
    assert json.loads(export_response("metrics", 1, "x", True)) == {
        "partialSuccess": {"rejectedDataPoints": "1", "errorMessage": "x"}
    }
    long = "é" * 300
    assert parse_status(status_body(400, long, False)) == (3, long)
    assert json.loads(status_body(503, "later", True)) == {"code": 14, "message": "later"}
    assert parse_status(b"\x08") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bodies_decode_or_fail_cleanly(body: bytes) -> None:
    dec = OtlpDecoder()
    for signal in ("metrics", "traces"):
        for parse in (parse_protobuf, parse_json):
            try:
                req = parse(body, signal)  # type: ignore[operator]
            except OtlpDecodeError:
                continue
            if signal == "metrics":
                dec.metrics(req)
            else:
                dec.spans(req)


names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=10)
tag_maps = st.dictionaries(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    max_size=3,
).map(lambda d: {k: v for k, v in d.items() if not k.startswith(("service.", "otel."))})
rows = st.tuples(
    names,
    st.sampled_from([MetricKind.COUNTER, MetricKind.GAUGE]),
    st.floats(allow_nan=False),
    st.integers(1, 2**63 - 1),
    tag_maps,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(rows, max_size=15))
def test_counters_and_gauges_round_trip(
    sent: list[tuple[str, MetricKind, float, int, dict[str, str]]],
) -> None:
    b = MetricBatchBuilder()
    for name, kind, value, ts, tags in sent:
        b.add(name, value, kind, "1", make_tags(tags), ts)
    encoded = OtlpEncoder(resource={"service.name": "s"}).metrics(Batch(b.build()))
    if not sent:
        assert encoded is None
        return
    assert encoded is not None
    wire = encoded.request.SerializeToString()
    got = OtlpDecoder(start_ns=2**63).metrics(parse_protobuf(wire, "metrics")).metrics
    extra = {"service.name": "s", "otel.scope.name": "revopipe"}
    want = sorted(
        (name, kind, value, ts, make_tags({**tags, **extra}))
        for name, kind, value, ts, tags in sent
    )
    assert sorted((m.name, m.kind, m.value, m.timestamp, m.tags) for m in got) == want
    # and OTLP/JSON carries the same
    as_json = json_format.MessageToJson(encoded.request)
    again = OtlpDecoder(start_ns=2**63).metrics(parse_json(as_json, "metrics")).metrics
    assert sorted((m.name, m.value, m.tags) for m in again) == sorted(
        (m.name, m.value, m.tags) for m in got
    )


def test_internal_spans_round_trip_without_a_kind_attribute() -> None:
    from opentelemetry.proto.trace.v1 import trace_pb2

    spans = (
        Span("work", TRACE, SPAN, 1, 2, None, "unset", (("k", "v"),)),
        Span("GET /", TRACE, "00f067aa0ba902b7", 1, 2, SPAN, "ok", (("span.kind", "client"),)),
        Span(
            "bad",
            TRACE,
            "00f067aa0ba902b8",
            1,
            2,
            None,
            "error",
            (("otel.status_description", "boom"),),
        ),
    )
    encoded = OtlpEncoder(resource={}).spans(Batch(events=spans))
    assert encoded is not None
    out = list(encoded.request.resource_spans[0].scope_spans[0].spans)
    assert [s.kind for s in out] == [
        trace_pb2.Span.SPAN_KIND_INTERNAL,
        trace_pb2.Span.SPAN_KIND_CLIENT,
        trace_pb2.Span.SPAN_KIND_INTERNAL,
    ]
    assert (out[2].status.code, out[2].status.message) == (
        trace_pb2.Status.STATUS_CODE_ERROR,
        "boom",
    )
    back = OtlpDecoder().spans(encoded.request).spans
    scope = ("otel.scope.name", "revopipe")
    assert back == tuple(
        Span(s.name, s.trace_id, s.span_id, s.start_ns, s.end_ns, s.parent_span_id, s.status,
             tuple(sorted((*s.attributes, scope))))
        for s in spans
    )  # fmt: skip
