from __future__ import annotations

import operator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe_plugins.loadtest.thresholds import (
    COUNT_METRICS,
    LATENCY_METRICS,
    Quantity,
    Threshold,
    ThresholdError,
    all_ok,
    evaluate,
    parse,
    render,
)

SUMMARY: dict[str, Any] = {
    "t": 10.0,
    "interval": 10.0,
    "requests": 10_000,
    "ok": 9_950,
    "errors": {"connect": 0, "timeout": 10, "status": 40, "read": 0},
    "bytes_received": 1,
    "target": 100.0,
    "active": 0,
    "dropped": 3,
    "latency_hdr": b"",
    "latency": {
        "min": 0.001,
        "mean": 0.012,
        "p50": 0.010,
        "p90": 0.020,
        "p95": 0.030,
        "p99": 0.25,
        "p99_9": 0.4,
        "max": 1.5,
    },
    "status": {"200": 9950, "500": 40},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99 < 250ms", Threshold("p99", "<", Quantity(250, "ms"))),
        ("p95<=1s", Threshold("p95", "<=", Quantity(1, "s"))),
        ("  p(99.9)  <  300 us ", Threshold("p99.9", "<", Quantity(300, "us"))),
        ("p99_9 < 2.5ms", Threshold("p99.9", "<", Quantity(2.5, "ms"))),
        ("avg < 100µs", Threshold("mean", "<", Quantity(100, "us"))),
        ("med<20ms", Threshold("p50", "<", Quantity(20, "ms"))),
        ("error_rate < 0.01", Threshold("error_rate", "<", Quantity(0.01, ""))),
        ("error_rate<1%", Threshold("error_rate", "<", Quantity(1, "%"))),
        ("rps > 900", Threshold("rps", ">", Quantity(900, ""))),
        ("requests >= 1e3", Threshold("requests", ">=", Quantity(1000, ""))),
        ("failed_requests == 0", Threshold("failed_requests", "==", Quantity(0, ""))),
        ("MAX != .5s", Threshold("max", "!=", Quantity(0.5, "s"))),
    ],
)
def test_parse(text: str, expected: Threshold) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "column", "fix"),
    [
        ("", 1, "expected a metric name"),
        ("latency < 1s", 1, "unknown metric 'latency'; use one of p50"),
        ("p42 < 1s", 1, "percentile 'p42' is not in the summary; use one of p50, p90"),
        ("p99 250ms", 5, "expected a comparison"),
        ("p99 = 250ms", 5, "use '=='"),
        ("p99 < fast", 7, "expected a number"),
        ("p99 < -1ms", 7, "never negative"),
        ("p99 < 250", 10, "needs a unit; use us, ms or s"),
        ("p99 < 250m", 10, "unknown unit 'm'"),
        ("error_rate < 1ms", 15, "write 0.01 or 1%"),
        ("rps > 900/s", 10, "unexpected '/s'"),
        ("rps > 900rps", 10, "rps takes a plain number"),
        ("p99 < 1s and p50 < 1ms", 10, "one comparison per threshold"),
    ],
)
def test_errors_name_the_column_and_the_fix(text: str, column: int, fix: str) -> None:
    with pytest.raises(ThresholdError) as info:
        parse(text)
    assert info.value.column == column
    assert fix in str(info.value)
    assert f"column {column}" in str(info.value)


UNITS = {
    **{m: ["us", "ms", "s"] for m in LATENCY_METRICS},
    "error_rate": ["", "%"],
    "rps": [""],
    **{m: [""] for m in COUNT_METRICS},
}


@st.composite
def thresholds(draw: st.DrawFn) -> Threshold:
    metric = draw(st.sampled_from(sorted(UNITS)))
    unit = draw(st.sampled_from(UNITS[metric]))
    value = draw(
        st.one_of(
            st.integers(0, 10**9).map(float),
            st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
        )
    )
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
    return Threshold(metric, op, Quantity(value, unit))


@given(thresholds(), st.sampled_from(["", " ", "   ", "\t"]))
def test_render_parse_round_trip(threshold: Threshold, space: str) -> None:
    text = render(threshold)
    assert parse(text) == threshold
    spaced = text.replace(" ", space)
    assert parse(f"{space}{spaced}{space}") == threshold


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_a_threshold_error(text: str) -> None:
    try:
        parse(text)
    except ThresholdError as exc:
        assert 1 <= exc.column <= len(text) + 1


def reference_observed(metric: str, s: dict[str, Any]) -> float:
    """Straight from the summary's definition."""
    failed = sum(s["errors"].values())
    table = {
        "error_rate": failed / s["requests"],
        "rps": s["requests"] / s["interval"],
        "requests": s["requests"],
        "ok_requests": s["ok"],
        "failed_requests": failed,
        "dropped": s["dropped"],
        **{m: s["latency"][key] for m, key in LATENCY_METRICS.items()},
    }
    return float(table[metric])


OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
OPERATORS.update({"==": operator.eq, "!=": operator.ne})
SCALE = {"us": 1e6, "ms": 1e3, "s": 1.0, "%": 100.0, "": 1.0}


@given(thresholds())
def test_evaluation_matches_a_reference(threshold: Threshold) -> None:
    (result,) = evaluate([threshold], SUMMARY)
    observed = reference_observed(threshold.metric, SUMMARY)
    limit = threshold.limit.value / SCALE[threshold.limit.unit]
    assert result.observed == observed
    assert result.limit == limit
    assert result.ok == OPERATORS[threshold.op](observed, limit)
    assert result.text == render(threshold)


def test_typical_gate() -> None:
    results = evaluate(
        ["p99 <= 250ms", "p50 < 20ms", "error_rate < 1%", "rps > 900", "failed_requests == 0"],
        SUMMARY,
    )
    assert [r.ok for r in results] == [True, True, True, True, False]
    assert not all_ok(results)
    assert results[2].observed == 0.005 and results[2].observed_text == "0.5%"
    assert results[0].observed_text == "250ms"
    assert results[3].observed_text == "1000.0"


def test_no_requests_fails_latency_and_error_rate() -> None:
    empty = {**SUMMARY, "requests": 0, "ok": 0, "errors": {}}
    results = evaluate(["p99 < 1s", "error_rate < 1%", "requests < 10"], empty)
    assert [r.ok for r in results] == [False, False, True]
    assert results[0].observed is None and results[0].observed_text == "n/a"
