"""The batch wire codec: exact round trips of every event type, and nothing but WireError
out of the decoder whatever bytes it is given."""

from __future__ import annotations

import contextlib
import math
import struct
from array import array
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revopipe.acks import Ack
from revopipe.batch import Batch, MetricBatch
from revopipe.events import (
    Alert,
    Event,
    Exemplar,
    Health,
    HealthStatus,
    HistogramSnapshot,
    LoadTestSample,
    Metric,
    MetricKind,
    Profile,
    Recommendation,
    Severity,
    Span,
)
from revopipe.wire.batch import VERSION, WireError, decode_batch, encode_batch

text = st.text(max_size=10)  # unicode, surrogates excluded (they are not valid UTF-8)
i64 = st.integers(-(2**63), 2**63 - 1)
floats = st.floats()  # NaN, +-inf, -0.0, subnormals
pairs = st.lists(st.tuples(text, text), max_size=3).map(tuple)
opt_text = st.none() | text

metric_events = st.builds(
    Metric,
    name=text,
    value=floats,
    kind=st.sampled_from(list(MetricKind)),
    unit=text,
    timestamp=i64,
    tags=pairs,
)
events: st.SearchStrategy[Event] = st.one_of(
    metric_events,
    st.builds(
        Span,
        name=text,
        trace_id=text,
        span_id=text,
        start_ns=i64,
        end_ns=i64,
        parent_span_id=opt_text,
        status=text,
        attributes=pairs,
    ),
    st.builds(
        Alert,
        rule=text,
        state=text,
        severity=st.sampled_from(list(Severity)),
        summary=text,
        labels=pairs,
        value=st.none() | floats,
        timestamp=i64,
    ),
    st.builds(
        Recommendation,
        title=text,
        action=text,
        priority=text,
        risk=text,
        evidence=pairs,
        timestamp=i64,
        key=text,
    ),
    st.builds(
        Profile,
        start_ns=i64,
        end_ns=i64,
        samples=st.lists(st.tuples(text, i64), max_size=3).map(tuple),
        tags=pairs,
    ),
    st.builds(
        LoadTestSample,
        test=text,
        timestamp=i64,
        requests=i64,
        errors=i64,
        latency_p50_s=floats,
        latency_p99_s=floats,
        users=i64,
    ),
    st.builds(
        Health,
        subject=text,
        status=st.sampled_from(list(HealthStatus)),
        reason=text,
        timestamp=i64,
    ),
    st.builds(
        HistogramSnapshot,
        name=text,
        unit=text,
        start_ns=i64,
        end_ns=i64,
        count=i64,
        sum=floats,
        min=floats,
        max=floats,
        hdr=text,
        resolution=floats,
        tags=pairs,
        exemplars=st.lists(st.builds(Exemplar, floats, text, text, i64), max_size=3).map(tuple),
    ),
)


@st.composite
def metric_batches(draw: st.DrawFn) -> MetricBatch:
    # Few distinct names/tags over many rows, like real batches, so the tables are shared.
    names = draw(st.lists(text, min_size=1, max_size=4))
    tag_sets = draw(st.lists(pairs, min_size=1, max_size=3))
    n = draw(st.integers(0, 30))
    pick = st.integers(0, 10**6)
    rows = [
        draw(st.tuples(pick, pick, floats, i64, st.sampled_from(list(MetricKind))))
        for _ in range(n)
    ]
    return MetricBatch(
        [names[r[0] % len(names)] for r in rows],
        bytes(r[4] for r in rows),
        array("d", [r[2] for r in rows]),
        [names[(r[0] + 1) % len(names)] for r in rows],
        array("q", [r[3] for r in rows]),
        [tag_sets[r[1] % len(tag_sets)] for r in rows],
    )


batches = st.builds(Batch, metrics=metric_batches(), events=st.lists(events, max_size=6).map(tuple))


def assert_same(a: Batch, b: Batch) -> None:
    ma, mb = a.metrics, b.metrics
    assert ma.names == mb.names
    assert ma.kinds == mb.kinds
    assert ma.values.tobytes() == mb.values.tobytes()  # bit-exact, NaN payloads included
    assert ma.units == mb.units
    assert ma.timestamps == mb.timestamps
    assert ma.tags == mb.tags
    # repr: NaN != NaN would fail ==, and repr also tells 0.0 from -0.0 and enums apart.
    assert [type(e) for e in a.events] == [type(e) for e in b.events]
    assert repr(a.events) == repr(b.events)


@given(batches)
def test_round_trip(batch: Batch) -> None:
    decoded = decode_batch(encode_batch(batch))
    assert_same(batch, decoded)


@given(st.lists(events, min_size=1, max_size=4))
def test_every_event_field_survives(evs: list[Event]) -> None:
    decoded = decode_batch(encode_batch(Batch(events=tuple(evs)))).events
    for original, back in zip(evs, decoded, strict=True):
        assert type(back) is type(original)
        for name in original.__dataclass_fields__:
            x, y = getattr(original, name), getattr(back, name)
            assert type(x) is type(y), name
            if isinstance(x, float) and math.isnan(x):
                assert math.isnan(y)
            elif not any(isinstance(v, float) and math.isnan(v) for v in _flat(x)):
                assert x == y, name


def _flat(v: object) -> list[object]:
    if isinstance(v, tuple):
        return [y for x in v for y in _flat(x)]
    if isinstance(v, Exemplar):
        return [v.value]
    return [v]


def test_empty_batch() -> None:
    decoded = decode_batch(encode_batch(Batch()))
    assert len(decoded) == 0
    assert decoded.metrics == MetricBatch()


def test_special_values_and_unicode() -> None:
    mb = MetricBatch(
        ["http.server.request.duration", "größe.📦", "http.server.request.duration"],
        bytes([MetricKind.HISTOGRAM, MetricKind.GAUGE, MetricKind.COUNTER]),
        array("d", [math.nan, math.inf, -0.0]),
        ["s", "Ω", "s"],
        array("q", [-(2**63), 0, 2**63 - 1]),
        [(("route", "/ä"),), (), (("route", "/ä"),)],
    )
    decoded = decode_batch(encode_batch(Batch(mb)))
    assert decoded.metrics.names == mb.names
    assert math.isnan(decoded.metrics.values[0])
    assert decoded.metrics.values[1] == math.inf
    assert math.copysign(1, decoded.metrics.values[2]) == -1
    assert decoded.metrics.tags[0] is decoded.metrics.tags[2]  # rebuilt once per distinct set


def test_decoded_batch_is_new() -> None:
    acked: list[bool] = []
    batch = Batch(origin="agent-1/7", acks=(Ack(acked.append),))
    decoded = decode_batch(encode_batch(batch))
    assert decoded.id != batch.id
    assert decoded.origin is None
    assert decoded.acks == ()
    batch.acks[0].release(True)
    assert acked == [True]


def test_values_are_raw_little_endian_columns() -> None:
    mb = MetricBatch(["a", "a"], bytes([1, 1]), array("d", [1.5, 2.5]), ["1", "1"],
                     array("q", [1, 2]), [(), ()])  # fmt: skip
    doc = msgpack.unpackb(encode_batch(Batch(mb)))
    assert doc["v"] == VERSION
    assert doc["m"]["x"] == struct.pack("<2d", 1.5, 2.5)
    assert doc["m"]["t"] == struct.pack("<2q", 1, 2)
    assert doc["m"]["s"] == ["a", "1"]


def _doc(batch: Batch | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = msgpack.unpackb(encode_batch(batch or Batch()))
    return doc


def test_version_mismatch_names_both_versions() -> None:
    doc = _doc()
    doc["v"] = 99
    with pytest.raises(WireError, match=r"unsupported format version 99.*reads version 1"):
        decode_batch(msgpack.packb(doc))


def test_not_a_batch() -> None:
    with pytest.raises(WireError, match=r"not a revopipe\.batch message"):
        decode_batch(msgpack.packb({"hello": 1}))
    with pytest.raises(WireError, match="not a msgpack message"):
        decode_batch(b"\xc1")
    with pytest.raises(WireError, match="not a msgpack message"):
        decode_batch(b"")


def test_bad_index_is_named() -> None:
    mb = MetricBatch(["a"], bytes([1]), array("d", [1.0]), ["1"], array("q", [1]), [()])
    doc = _doc(Batch(mb))
    doc["m"]["ni"] = struct.pack("<I", 7)
    with pytest.raises(WireError, match=r"metrics\.ni: index 7 is beyond its table of 2"):
        decode_batch(msgpack.packb(doc))


def test_unknown_event_type_is_named() -> None:
    doc = _doc()
    doc["e"] = [["gossip", 1]]
    with pytest.raises(WireError, match=r"events\[0\]: unknown event type 'gossip'"):
        decode_batch(msgpack.packb(doc))


def test_bad_enum_is_named() -> None:
    doc = _doc(Batch(events=(Health("svc", HealthStatus.HEALTHY),)))
    doc["e"][0][2] = "sleepy"
    with pytest.raises(WireError, match=r"events\[0\]\.status: 'sleepy' is not a HealthStatus"):
        decode_batch(msgpack.packb(doc))


def test_unencodable_batch_is_a_wire_error() -> None:
    huge = Health("svc", HealthStatus.HEALTHY, timestamp=2**70)
    with pytest.raises(WireError, match="cannot be encoded"):
        encode_batch(Batch(events=(huge,)))


# ------------------------------------------------------------------------------ fuzzing


def _decode_or_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_batch(data)


@given(st.binary(max_size=300))
def test_random_bytes_only_wire_error(data: bytes) -> None:
    _decode_or_wire_error(data)


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(encode_batch(draw(batches)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
    return bytes(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(byte_mutations())
def test_mutated_bytes_only_wire_error(data: bytes) -> None:
    _decode_or_wire_error(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64) + 1, 2**64 - 1).filter(lambda i: -(2**63) <= i < 2**64)
    | st.floats()
    | text
    | st.binary(max_size=20)
    | st.sampled_from(["span", "metric", "histogram_snapshot", "healthy", "warning", 1, 4, -1]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["n", "s", "k", "x", "f", "v", "m", "e"]), children, max_size=4
        )
    ),
    max_leaves=12,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*path, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*path, i)))
    return out


@st.composite
def structural_mutations(draw: st.DrawFn) -> bytes:
    doc = _doc(draw(batches))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        elif draw(st.booleans()) and isinstance(parent, list):
            parent.append(draw(msgpack_values))
        else:
            parent[path[-1]] = draw(msgpack_values)
        if not isinstance(doc, dict) or not doc:
            break
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    return packed


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(structural_mutations())
def test_mutated_structure_only_wire_error(data: bytes) -> None:
    _decode_or_wire_error(data)
