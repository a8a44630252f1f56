"""The batch wire format: one `Batch` as one msgpack message, for moving batches between
revopipe processes over a message bus (the `nats` sink and source).

Layout (msgpack map at the top level, short keys because every message carries them):

    {"f": "revopipe.batch",          # magic: what this payload is
     "v": 1,                          # format version; a reader rejects any other
     "m": {                           # metrics, as columns (n rows)
        "n":  n,                      # row count
        "s":  [str, ...],             # string table shared by names and units
        "ni": bin,                    # name of row i  = s[ni[i]]   (uint32 LE array)
        "ui": bin,                    # unit of row i  = s[ui[i]]   (uint32 LE array)
        "k":  bin,                    # kind of row i  = MetricKind(k[i])  (1 byte each)
        "x":  bin,                    # values: float64 LE array   (8 * n bytes)
        "t":  bin,                    # timestamps: int64 LE array (8 * n bytes)
        "g":  [[k, v, k, v, ...], ...],  # table of distinct tag tuples, pairs flattened
        "gi": bin},                   # tags of row i  = g[gi[i]]   (uint32 LE array)
     "e": [[type, field, ...], ...]}  # other events: the event's `type` then its fields
                                      # in declaration order; enums as their values, pair
                                      # tuples flattened like tags, exemplars as arrays

Columns travel as raw little-endian arrays so that decoding is one `frombytes` per column
rather than a Python object per value; only names, units and tags are rebuilt per row
(from the tables, by index). The id, origin and acks of a batch are local to a process
and do not travel: `decode_batch` returns a new batch with a fresh id, no origin and no
acks; a transport carries the origin in its own message header.

Decoding trusts nothing: sizes are capped before and during unpacking, every shape and
type is checked, and any malformed input raises `WireError` (a `ValueError`) saying what
is wrong, never a KeyError/TypeError/IndexError.
"""

from __future__ import annotations

import enum
import operator
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import msgpack  # type: ignore[import-untyped]

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
    Tags,
)

__all__ = ["FORMAT", "MAX_PAYLOAD_BYTES", "VERSION", "WireError", "decode_batch", "encode_batch"]

FORMAT: Final = "revopipe.batch"
VERSION: Final = 1

MAX_PAYLOAD_BYTES: Final = 64 * 1024 * 1024
"""NATS itself caps messages at 64 MiB (default 1 MiB); anything bigger is not ours."""
_MAX_STR_BYTES: Final = 16 * 1024 * 1024
_MAX_ARRAY_LEN: Final = 4 * 1024 * 1024
_MAX_MAP_LEN: Final = 64

_BIG_ENDIAN: Final = sys.byteorder == "big"


def _index_typecode() -> str:
    # The C type behind "I"/"L" varies by platform; the wire wants exactly 4 bytes.
    for code in ("I", "L"):
        if array(code).itemsize == 4:
            return code
    raise ImportError("revopipe.wire.batch: no 4-byte unsigned array type on this platform")


_IDX: Final = _index_typecode()
_VALID_KINDS: Final = bytes(k.value for k in MetricKind)


class WireError(ValueError):
    """A payload that is not a valid revopipe batch (or a batch that cannot be encoded)."""


# ---------------------------------------------------------------------------- encoding


def _raw(a: array[Any]) -> bytes:
    if _BIG_ENDIAN:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _flat_pairs(pairs: Sequence[tuple[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for k, v in pairs:
        out.append(k)
        out.append(v)
    return out


def _encode_metrics(mb: MetricBatch) -> dict[str, Any]:
    strings: dict[str, int] = {}
    intern = strings.setdefault
    names = array(_IDX, [intern(s, len(strings)) for s in mb.names])
    units = array(_IDX, [intern(s, len(strings)) for s in mb.units])
    tag_table: dict[Tags, int] = {}
    tag_intern = tag_table.setdefault
    tag_idx = array(_IDX, [tag_intern(t, len(tag_table)) for t in mb.tags])
    values = mb.values if mb.values.typecode == "d" else array("d", mb.values)
    stamps = mb.timestamps if mb.timestamps.typecode == "q" else array("q", mb.timestamps)
    return {
        "n": len(mb),
        "s": list(strings),
        "ni": _raw(names),
        "ui": _raw(units),
        "k": bytes(mb.kinds),
        "x": _raw(values),
        "t": _raw(stamps),
        "g": [_flat_pairs(t) for t in tag_table],
        "gi": _raw(tag_idx),
    }


def _encode_event(e: Event) -> list[Any]:
    # Field order is the dataclass declaration order; _DECODERS below mirrors it.
    if isinstance(e, Metric):
        return [e.type, e.name, e.value, int(e.kind), e.unit, e.timestamp, _flat_pairs(e.tags)]
    if isinstance(e, Span):
        return [
            e.type,
            e.name,
            e.trace_id,
            e.span_id,
            e.start_ns,
            e.end_ns,
            e.parent_span_id,
            e.status,
            _flat_pairs(e.attributes),
        ]
    if isinstance(e, Alert):
        return [
            e.type,
            e.rule,
            e.state,
            str(e.severity),  # a plain str given for the enum encodes the same
            e.summary,
            _flat_pairs(e.labels),
            e.value,
            e.timestamp,
        ]
    if isinstance(e, Recommendation):
        return [
            e.type,
            e.title,
            e.action,
            e.priority,
            e.risk,
            _flat_pairs(e.evidence),
            e.timestamp,
            e.key,
        ]
    if isinstance(e, Profile):
        return [e.type, e.start_ns, e.end_ns, _flat_pairs(e.samples), _flat_pairs(e.tags)]
    if isinstance(e, LoadTestSample):
        return [
            e.type,
            e.test,
            e.timestamp,
            e.requests,
            e.errors,
            e.latency_p50_s,
            e.latency_p99_s,
            e.users,
        ]
    if isinstance(e, Health):
        return [e.type, e.subject, str(e.status), e.reason, e.timestamp]
    if isinstance(e, HistogramSnapshot):
        return [
            e.type,
            e.name,
            e.unit,
            e.start_ns,
            e.end_ns,
            e.count,
            e.sum,
            e.min,
            e.max,
            e.hdr,
            e.resolution,
            _flat_pairs(e.tags),
            [[x.value, x.trace_id, x.span_id, x.timestamp_ns] for x in e.exemplars],
        ]
    raise WireError(
        f"wire batch encoder: no wire mapping for event type {type(e).__name__}; "
        "add it to revopipe.wire.batch (_encode_event and _DECODERS)"
    )


def encode_batch(batch: Batch) -> bytes:
    """`batch` as one self-describing msgpack payload (see the module docstring)."""
    doc = {
        "f": FORMAT,
        "v": VERSION,
        "m": _encode_metrics(batch.metrics),
        "e": [_encode_event(e) for e in batch.events],
    }
    try:
        data: bytes = msgpack.packb(doc, use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as exc:
        # e.g. an int beyond 64 bits or a str with a lone surrogate in some event field.
        raise WireError(f"wire batch encoder: batch {batch.id} cannot be encoded: {exc}") from exc
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError(
            f"wire batch encoder: batch {batch.id} encodes to {len(data)} bytes, over the "
            f"{MAX_PAYLOAD_BYTES}-byte limit; lower the upstream batch size"
        )
    return data


# ---------------------------------------------------------------------------- decoding


def _fail(where: str, problem: str) -> WireError:
    return WireError(f"wire batch: {where}: {problem}")


def _tname(v: object) -> str:
    return type(v).__name__


def _str(v: object, where: str) -> str:
    if type(v) is not str:
        raise _fail(where, f"expected a string, got {_tname(v)}")
    return v


def _opt_str(v: object, where: str) -> str | None:
    return None if v is None else _str(v, where)


def _int(v: object, where: str) -> int:
    if type(v) is not int:
        raise _fail(where, f"expected an integer, got {_tname(v)}")
    return v


def _float(v: object, where: str) -> float:
    # An int stays an int: a producer that put an int there gets exactly that back.
    if type(v) is not float and type(v) is not int:
        raise _fail(where, f"expected a number, got {_tname(v)}")
    return v


def _opt_float(v: object, where: str) -> float | None:
    return None if v is None else _float(v, where)


def _list(v: object, where: str) -> list[Any]:
    if type(v) is not list:
        raise _fail(where, f"expected an array, got {_tname(v)}")
    return v


def _bin(v: object, where: str) -> bytes:
    if type(v) is not bytes:
        raise _fail(where, f"expected binary data, got {_tname(v)}")
    return v


def _str_pairs(v: object, where: str) -> tuple[tuple[str, str], ...]:
    flat = _list(v, where)
    if len(flat) % 2 or any(type(s) is not str for s in flat):
        raise _fail(where, "expected a flat array of string pairs")
    it = iter(flat)
    return tuple(zip(it, it, strict=True))


def _samples(v: object, where: str) -> tuple[tuple[str, int], ...]:
    flat = _list(v, where)
    if len(flat) % 2 or any(
        type(s) is not str or type(c) is not int for s, c in zip(flat[::2], flat[1::2], strict=True)
    ):
        raise _fail(where, "expected a flat array of (stack string, integer count) pairs")
    it = iter(flat)
    return tuple(zip(it, it, strict=True))


_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")


def _enum(cls: type[_E]) -> Callable[[object, str], _E]:
    def conv(v: object, where: str) -> _E:
        if type(v) is not (int if issubclass(cls, int) else str):
            raise _fail(where, f"expected a {cls.__name__} value, got {_tname(v)}")
        try:
            return cls(v)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise _fail(where, f"{v!r} is not a {cls.__name__} ({allowed})") from None

    return conv


def _exemplars(v: object, where: str) -> tuple[Exemplar, ...]:
    out = []
    for i, x in enumerate(_list(v, where)):
        w = f"{where}[{i}]"
        row = _list(x, w)
        if len(row) != 4:
            raise _fail(
                w, f"expected 4 fields (value, trace_id, span_id, timestamp_ns), got {len(row)}"
            )
        out.append(
            Exemplar(
                _float(row[0], f"{w}.value"),
                _str(row[1], f"{w}.trace_id"),
                _str(row[2], f"{w}.span_id"),
                _int(row[3], f"{w}.timestamp_ns"),
            )
        )
    return tuple(out)


_Conv = Callable[[object, str], Any]

# type -> (class, ((field name, converter), ...)) in the encoder's field order.
_DECODERS: Final[dict[str, tuple[Callable[..., Event], tuple[tuple[str, _Conv], ...]]]] = {
    Metric.type: (
        Metric,
        (
            ("name", _str),
            ("value", _float),
            ("kind", _enum(MetricKind)),
            ("unit", _str),
            ("timestamp", _int),
            ("tags", _str_pairs),
        ),
    ),
    Span.type: (
        Span,
        (
            ("name", _str),
            ("trace_id", _str),
            ("span_id", _str),
            ("start_ns", _int),
            ("end_ns", _int),
            ("parent_span_id", _opt_str),
            ("status", _str),
            ("attributes", _str_pairs),
        ),
    ),
    Alert.type: (
        Alert,
        (
            ("rule", _str),
            ("state", _str),
            ("severity", _enum(Severity)),
            ("summary", _str),
            ("labels", _str_pairs),
            ("value", _opt_float),
            ("timestamp", _int),
        ),
    ),
    Recommendation.type: (
        Recommendation,
        (
            ("title", _str),
            ("action", _str),
            ("priority", _str),
            ("risk", _str),
            ("evidence", _str_pairs),
            ("timestamp", _int),
            ("key", _str),
        ),
    ),
    Profile.type: (
        Profile,
        (
            ("start_ns", _int),
            ("end_ns", _int),
            ("samples", _samples),
            ("tags", _str_pairs),
        ),
    ),
    LoadTestSample.type: (
        LoadTestSample,
        (
            ("test", _str),
            ("timestamp", _int),
            ("requests", _int),
            ("errors", _int),
            ("latency_p50_s", _float),
            ("latency_p99_s", _float),
            ("users", _int),
        ),
    ),
    Health.type: (
        Health,
        (
            ("subject", _str),
            ("status", _enum(HealthStatus)),
            ("reason", _str),
            ("timestamp", _int),
        ),
    ),
    HistogramSnapshot.type: (
        HistogramSnapshot,
        (
            ("name", _str),
            ("unit", _str),
            ("start_ns", _int),
            ("end_ns", _int),
            ("count", _int),
            ("sum", _float),
            ("min", _float),
            ("max", _float),
            ("hdr", _str),
            ("resolution", _float),
            ("tags", _str_pairs),
            ("exemplars", _exemplars),
        ),
    ),
}


def _decode_event(raw: object, where: str) -> Event:
    row = _list(raw, where)
    if not row:
        raise _fail(where, "empty event (expected [type, field, ...])")
    kind = row[0]
    entry = _DECODERS.get(kind) if type(kind) is str else None
    if entry is None:
        known = ", ".join(sorted(_DECODERS))
        raise _fail(where, f"unknown event type {kind!r} (known: {known})")
    cls, fields = entry
    if len(row) != len(fields) + 1:
        raise _fail(where, f"{kind} event has {len(row) - 1} fields, expected {len(fields)}")
    return cls(
        *(conv(v, f"{where}.{name}") for (name, conv), v in zip(fields, row[1:], strict=True))
    )


def _map(v: object, where: str, keys: Sequence[str]) -> dict[str, Any]:
    if type(v) is not dict:
        raise _fail(where, f"expected a map, got {_tname(v)}")
    missing = [k for k in keys if k not in v]
    if missing:
        raise _fail(where, f"missing key(s) {', '.join(missing)}")
    return v


def _column(v: object, where: str, typecode: str, n: int) -> array[Any]:
    data = _bin(v, where)
    col = array(typecode)
    if len(data) != n * col.itemsize:
        raise _fail(where, f"{len(data)} bytes for {n} rows of {col.itemsize} bytes each")
    col.frombytes(data)
    if _BIG_ENDIAN:
        col.byteswap()
    return col


def _indexes(v: object, where: str, n: int, table_len: int) -> array[int]:
    idx = _column(v, where, _IDX, n)
    if n and max(idx) >= table_len:
        raise _fail(where, f"index {max(idx)} is beyond its table of {table_len} entries")
    return idx


_METRIC_KEYS: Final = ("n", "s", "ni", "ui", "k", "x", "t", "g", "gi")


def _decode_metrics(raw: object) -> MetricBatch:
    m = _map(raw, "metrics", _METRIC_KEYS)
    n = _int(m["n"], "metrics.n")
    if n < 0:
        raise _fail("metrics.n", f"negative row count {n}")
    strings = _list(m["s"], "metrics.s")
    if any(type(s) is not str for s in strings):
        raise _fail("metrics.s", "string table holds a non-string")
    names = _indexes(m["ni"], "metrics.ni", n, len(strings))
    units = _indexes(m["ui"], "metrics.ui", n, len(strings))
    kinds = _bin(m["k"], "metrics.k")
    if len(kinds) != n:
        raise _fail("metrics.k", f"{len(kinds)} kinds for {n} rows")
    if kinds.translate(None, _VALID_KINDS):
        raise _fail("metrics.k", f"unknown metric kind code (valid: {list(_VALID_KINDS)})")
    values = _column(m["x"], "metrics.x", "d", n)
    stamps = _column(m["t"], "metrics.t", "q", n)
    tag_table = [_str_pairs(t, f"metrics.g[{i}]") for i, t in enumerate(_list(m["g"], "metrics.g"))]
    tag_idx = _indexes(m["gi"], "metrics.gi", n, len(tag_table))
    return MetricBatch(
        _pick(strings, names),
        kinds,
        values,
        _pick(strings, units),
        stamps,
        _pick(tag_table, tag_idx),
    )


def _pick(table: list[_T], idx: array[int]) -> tuple[_T, ...]:
    """`table[i]` for each index, in C: a comprehension costs ~0.1 µs a row."""
    if not idx:
        return ()
    if len(table) == 1:
        return (table[0],) * len(idx)
    got = operator.itemgetter(*idx)(table)
    return got if len(idx) > 1 else (got,)


def decode_batch(data: bytes) -> Batch:
    """The batch `encode_batch` wrote, as a new `Batch` (fresh id, no origin, no acks).

    Raises `WireError` on anything that is not a valid payload of this format version."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"wire batch: expected bytes, got {_tname(data)}")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise _fail("payload", f"{len(data)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")
    try:
        doc = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=_MAX_STR_BYTES,
            max_bin_len=MAX_PAYLOAD_BYTES,
            max_array_len=_MAX_ARRAY_LEN,
            max_map_len=_MAX_MAP_LEN,
            max_ext_len=0,
        )
    except Exception as exc:  # the C unpacker raises a zoo of types for bad input
        raise _fail("payload", f"not a msgpack message ({type(exc).__name__}: {exc})") from None
    if type(doc) is not dict or doc.get("f") != FORMAT:
        raise _fail("payload", f"not a {FORMAT} message (no format marker)")
    version = doc.get("v")
    if type(version) is not int or version != VERSION:
        raise _fail(
            "payload",
            f"unsupported format version {version!r}; this revopipe reads version {VERSION} "
            "only: run the same revopipe version on both ends of the transport",
        )
    _map(doc, "payload", ("m", "e"))
    metrics = _decode_metrics(doc["m"])
    events = tuple(
        _decode_event(e, f"events[{i}]") for i, e in enumerate(_list(doc["e"], "events"))
    )
    return Batch(metrics, events)
