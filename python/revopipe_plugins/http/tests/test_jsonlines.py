"""The /ingest JSON-lines parser against a reference: rows the jsonl sink writes come back
exactly; arbitrary input is either accepted or an IngestError (a 400), never a crash."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe import _core
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.encode import batch_jsonl
from revopipe.events import Exemplar, HistogramSnapshot, MetricKind, Span, make_tags
from revopipe_plugins.http.jsonlines import IngestError, parse_lines

NOW = 1_700_000_000_000_000_000

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
names = text.filter(bool)
tags = st.dictionaries(text, text, max_size=4)
values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53)
rows = st.tuples(
    names,
    st.sampled_from(list(MetricKind)),
    values,
    text,
    st.integers(0, 2**63 - 1),
    tags,
)
hex_ids = st.binary(min_size=8, max_size=8).filter(any).map(bytes.hex)
spans = st.builds(
    lambda name, t1, t2, sid, parent, start, dur, status, attrs: Span(
        name, t1 + t2, sid, start, start + dur, parent, status, make_tags(attrs)
    ),
    text,
    hex_ids,
    hex_ids,
    hex_ids,
    st.none() | hex_ids,
    st.integers(0, 2**62),
    st.integers(0, 2**40),
    st.sampled_from(["ok", "error", "unset"]),
    tags,
)


def same_value(got: float, sent: float) -> bool:
    # The jsonl sink writes NaN and infinities as null, read back as NaN.
    if not math.isfinite(sent):
        return math.isnan(got)
    return got == float(sent)


@settings(max_examples=200, deadline=None)
@given(st.lists(rows, max_size=20), st.lists(spans, max_size=5))
def test_rows_written_by_the_jsonl_sink_round_trip(
    sent_rows: list[tuple[str, MetricKind, float, str, int, dict[str, str]]],
    sent_spans: list[Span],
) -> None:
    b = MetricBatchBuilder()
    for name, kind, value, unit, ts, tg in sent_rows:
        b.add(name, value, kind, unit, make_tags(tg), ts)
    body = batch_jsonl(Batch(b.build(), tuple(sent_spans)))
    metrics, got_spans = parse_lines(body, NOW)
    got = list(metrics)
    assert len(got) == len(sent_rows)
    for m, (name, kind, value, unit, ts, tg) in zip(got, sent_rows, strict=True):
        assert (m.name, m.kind, m.unit, m.timestamp, m.tags) == (
            name,
            kind,
            unit,
            ts,
            make_tags(tg),
        )
        assert same_value(m.value, value)
    assert got_spans == sent_spans


# Near-valid input finds more paths than random bytes: objects with the right keys and
# wrong values.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(
    ["type", "name", "kind", "value", "unit", "timestamp", "tags", "trace_id", "span_id",
     "parent_span_id", "start_ns", "end_ns", "status", "attributes", "other"]
)  # fmt: skip
near_valid = st.dictionaries(keys, json_values, max_size=8).map(lambda d: json.dumps(d).encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60) | near_valid, min_size=1, max_size=5))
def test_garbage_is_accepted_or_a_clear_error(lines: list[bytes]) -> None:
    body = b"\n".join(lines)
    try:
        metrics, got_events = parse_lines(body, NOW)
    except IngestError as exc:
        assert exc.line >= 1 and str(exc).startswith(f"line {exc.line}")
        return
    # accepted: every row is well formed
    for m in metrics:
        assert m.name and isinstance(m.kind, MetricKind) and m.timestamp >= 0
    for e in got_events:
        assert isinstance(e, Span | HistogramSnapshot)
        if isinstance(e, Span):
            assert len(e.trace_id) == 32 and len(e.span_id) == 16 and e.end_ns >= e.start_ns


def test_null_value_is_nan_and_missing_timestamp_is_now() -> None:
    metrics, _ = parse_lines(b'{"name": "x", "value": null}\n', NOW)
    [m] = list(metrics)
    assert math.isnan(m.value) and m.timestamp == NOW and m.kind is MetricKind.GAUGE


def test_the_first_bad_line_is_reported() -> None:
    good = b'{"name": "x", "value": 1}'
    with pytest.raises(IngestError) as info:
        parse_lines(b"\n".join([good, good, b'{"name": "x", "value": true}', b"{"]), NOW)
    assert (info.value.line, info.value.key) == (3, "value")


def test_histogram_snapshot_lines_round_trip_and_bad_hdr_is_refused() -> None:
    _core.reset_instruments()
    h = _core.histogram("lat", "s", (("route", "/"),))
    for v in (0.01, 0.02):
        h.record(v)
    [r] = [x for x in _core.collect_instruments() if x["kind"] == 2]
    snap = HistogramSnapshot.from_core(r, 1, 2)
    snap = dataclasses.replace(
        snap,
        exemplars=(Exemplar(0.02, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 3),),
    )
    body = batch_jsonl(Batch(events=(snap,)))
    _, events = parse_lines(body, NOW)
    assert events == [snap]
    bad = json.dumps({**snap.to_dict(), "hdr": "bm90IGhkcg=="}).encode()
    with pytest.raises(IngestError) as info:
        parse_lines(b"\n" + bad, NOW)
    assert (info.value.line, info.value.key) == (2, "hdr")
