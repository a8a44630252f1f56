"""OpenTelemetry -> Prometheus names, label names, value formatting, content negotiation
and default buckets (revopipe.wire.prometheus)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from revopipe.events import MetricKind
from revopipe.wire.prometheus import (
    Format,
    check_buckets,
    default_buckets,
    format_le,
    format_timestamp_ns,
    format_value,
    label_name,
    labels,
    metric_name,
    negotiate,
    unit_suffix,
)

C, G, H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM
VALID_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
VALID_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("http.server.request.duration", "s", H, "http_server_request_duration_seconds"),
        ("http.server.request.duration", "ms", H, "http_server_request_duration_milliseconds"),
        ("app.requests", "{request}", C, "app_requests_total"),
        ("app.requests", "1", C, "app_requests_total"),
        ("app.requests.total", "1", C, "app_requests_total"),  # not doubled
        ("system.network.io", "By", C, "system_network_io_bytes_total"),
        ("system.memory.usage", "By", G, "system_memory_usage_bytes"),
        ("system.memory.usage.bytes", "By", G, "system_memory_usage_bytes"),  # already there
        ("process.cpu.time", "s", C, "process_cpu_time_seconds_total"),
        ("process_cpu_seconds_total", "s", C, "process_cpu_seconds_total"),  # idempotent
        ("system.cpu.utilization", "1", G, "system_cpu_utilization_ratio"),
        ("queue.depth", "1", G, "queue_depth"),  # "1" is revopipe's default: no _ratio
        ("system.cpu.utilization.last", "1", G, "system_cpu_utilization_last"),
        ("app.requests.rate", "{request}/s", G, "app_requests_rate_per_second"),
        ("net.throughput", "By/s", G, "net_throughput_bytes_per_second"),
        ("system.network.dropped", "{packets}", G, "system_network_dropped"),
        ("system.network.dropped", "packets", G, "system_network_dropped_packets"),
        ("cpu.temp", "Cel", G, "cpu_temp_celsius"),
        ("(lambda).function.executions(#)", "", G, "lambda_function_executions"),
        ("my-app/latency (µ)", "us", H, "my_app_latency_microseconds"),
        ("2xx.responses", "1", C, "_2xx_responses_total"),
        ("a:b.c", "1", G, "a:b_c"),
        ("...", "1", G, "unnamed"),
        ("total", "1", C, "total_total"),
    ],
)
def test_metric_names(name: str, unit: str, kind: MetricKind, expected: str) -> None:
    assert metric_name(name, unit, kind) == expected


@given(st.text(), st.text(max_size=12), st.sampled_from([C, G, H]))
def test_every_name_becomes_a_valid_prometheus_name(name: str, unit: str, kind: MetricKind) -> None:
    out = metric_name(name, unit, kind)
    assert VALID_NAME.fullmatch(out), out
    assert not out.startswith("__")  # reserved for Prometheus itself
    if kind is C:
        assert out.endswith("_total")


@pytest.mark.parametrize(
    ("unit", "suffix"),
    [("s", "seconds"), ("By", "bytes"), ("1", ""), ("{request}", ""), ("1/s", "per_second")],
)
def test_unit_suffix(unit: str, suffix: str) -> None:
    assert unit_suffix(unit) == suffix


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("http.route", "http_route"),
        ("ok_name", "ok_name"),
        ("0day", "key_0day"),
        ("_private", "key_private"),
        ("__name__", "key__name__"),
        ("", "key_"),
        ("çà", "__"),
    ],
)
def test_label_names(key: str, expected: str) -> None:
    out = label_name(key)
    if expected == "__":
        assert VALID_LABEL.fullmatch(out) and not out.startswith("__")
    else:
        assert out == expected


@given(st.text())
def test_every_tag_key_becomes_a_valid_label_name(key: str) -> None:
    out = label_name(key)
    assert VALID_LABEL.fullmatch(out), out
    assert not out.startswith("__")


def test_colliding_tag_keys_are_joined_in_key_order() -> None:
    assert labels([("a.b", "1"), ("a_b", "2"), ("c", "3")]) == (("a_b", "1;2"), ("c", "3"))


def test_a_tag_named_le_on_a_histogram_is_exported_le() -> None:
    assert labels([("le", "x"), ("route", "/")], ("le",)) == (
        ("exported_le", "x"),
        ("route", "/"),
    )


@given(st.floats(min_value=0, allow_nan=False))
def test_le_is_formatted_like_prometheus_client(bound: float) -> None:
    assert format_le(bound) == floatToGoString(bound)


@given(st.floats())
def test_values_read_back_exactly(value: float) -> None:
    text = format_value(value)
    back = float(text)
    assert back == value or (math.isnan(back) and math.isnan(value))
    assert text in ("NaN", "+Inf", "-Inf") or "inf" not in text.lower()


def test_timestamps_keep_every_nanosecond() -> None:
    assert format_timestamp_ns(1_700_000_000_123_456_789) == "1700000000.123456789"
    assert format_timestamp_ns(1_700_000_000_000_000_000) == "1700000000"
    assert format_timestamp_ns(1_700_000_000_500_000_000) == "1700000000.5"


PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, Format.TEXT),
        ("", Format.TEXT),
        ("*/*", Format.TEXT),
        ("text/plain", Format.TEXT),
        ("application/json", Format.TEXT),
        (PROMETHEUS_2_ACCEPT, Format.OPENMETRICS),
        ("application/openmetrics-text", Format.OPENMETRICS),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", Format.OPENMETRICS),
        ("application/openmetrics-text;version=0.0.1", Format.TEXT),  # a version we lack
        ("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5", Format.TEXT),
        ("text/plain;q=0.5,application/openmetrics-text;q=0.9", Format.OPENMETRICS),
        ("application/openmetrics-text;q=0", Format.TEXT),
        ("application/openmetrics-text;q=bogus,text/plain", Format.TEXT),
    ],
)
def test_content_negotiation(accept: str | None, fmt: Format) -> None:
    assert negotiate(accept) is fmt


def test_default_buckets_follow_the_unit() -> None:
    seconds = default_buckets("s")
    assert seconds[0] == 0.005 and seconds[-1] == 10.0
    assert default_buckets("ms") == tuple(b * 1000 for b in seconds)
    assert default_buckets("ms")[0] == 5.0
    assert default_buckets("By")[0] == 64.0
    assert default_buckets("{request}")[-1] == 10000.0
    for unit in ("s", "ms", "us", "ns", "By", "1"):
        assert check_buckets(default_buckets(unit)) == default_buckets(unit)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ([], "empty"),
        ([1.0, 1.0], "strictly ascending"),
        ([2.0, 1.0], "strictly ascending"),
        ([1.0, math.inf], "not finite"),
        ([math.nan], "not finite"),
    ],
)
def test_bad_buckets_are_refused(bounds: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_buckets(bounds)
