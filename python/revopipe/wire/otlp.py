"""OTLP, the OpenTelemetry protocol, to and from revopipe batches.

One mapping for both directions, shared by the `otlp` sink (`OtlpEncoder`) and the `http`
source (`OtlpDecoder`), so what one writes the other reads back.

Export (revopipe → OTLP):

- counter rows (cumulative totals) → Sum, monotonic, CUMULATIVE. A series' start time is
  when this process started (the total may be older: revopipe does not know when a
  counter was created), moved to the previous point's time when the total goes down (a
  reset).
- gauge rows → Gauge.
- `HistogramSnapshot` events (delta windows) → Histogram, DELTA, from start_ns to end_ns:
  count, sum, min and max exact; explicit bucket counts read from the HDR histogram (exact
  to its precision) with bounds chosen by unit (`DEFAULT_BOUNDS`, overridable); exemplars
  with their trace and span ids.
- raw histogram rows (one observation each) → one DELTA Histogram point per series and
  batch, spanning the batch's first to last timestamp, with exact counts per bucket.
- set rows (each value a member) → a Gauge per series and batch holding the number of
  distinct members in the batch. OTLP has no set; put an `aggregate` processor upstream
  for distinct counts per window.
- `Span` events → spans (hex ids to bytes; status "ok"/"error"/"unset" to OK/ERROR/UNSET;
  a `span.kind` attribute becomes the span kind, INTERNAL without one, as `revopipe.trace`
  writes them; `otel.status_description` becomes the status message).

Tags whose key matches `resource_keys` (`service.*`, `host.*`, … by default) move to the
Resource, so series of several services keep their identity; `otel.scope.name` and
`otel.scope.version` tags name the instrumentation scope (default: revopipe).

Ingest (OTLP → revopipe):

- Sum monotonic CUMULATIVE → counter rows. A series first seen whose start time is after
  the decoder started gets a 0 baseline row first, so its first count is not lost (the
  aggregator takes a series' first sample as its baseline).
- Sum monotonic DELTA → counter rows holding a running total per series: a new series
  starts with a 0 baseline row, then total += delta.
- Sum non-monotonic → gauge rows (a DELTA one as a running total since the decoder started).
- Gauge → gauge rows.
- Histogram → counters `<name>.count`, `<name>.sum`, `<name>.bucket` (tag `le`, cumulative
  counts per upper bound, "+Inf" last, like Prometheus) and gauges `<name>.min`,
  `<name>.max` when present; DELTA points become running totals as for sums.
- ExponentialHistogram → the same but without buckets (their scale may change per point,
  so bucket series would churn).
- Summary → counters `<name>.count`, `<name>.sum` and a gauge `<name>` per quantile (tag
  `quantile`).
- Exemplars, span events and links are not kept.
- Resource and scope attributes become tags (the point's own attributes win), the scope's
  name and version as `otel.scope.name` / `otel.scope.version`. Non-string attribute
  values become strings (arrays and maps as JSON).
- Spans → `Span` events; a kind other than INTERNAL or UNSPECIFIED becomes a `span.kind`
  attribute ("server", …) and a status message `otel.status_description`.

OTLP/JSON carries trace and span ids as hex, not base64 as protobuf's JSON mapping does:
`parse_json` converts them before handing the rest to protobuf's `json_format`.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from revopipe import _core
from revopipe.batch import Batch, MetricBatch, MetricBatchBuilder
from revopipe.events import HistogramSnapshot, MetricKind, Span, Tags, now_ns

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_RESOURCE_KEYS",
    "FALLBACK_BOUNDS",
    "DecodedMetrics",
    "DecodedSpans",
    "EncodedMetrics",
    "EncodedSpans",
    "OtlpDecodeError",
    "OtlpDecoder",
    "OtlpEncoder",
    "export_response",
    "parse_json",
    "parse_protobuf",
    "parse_status",
    "status_body",
]

SCOPE_NAME_TAG = "otel.scope.name"
SCOPE_VERSION_TAG = "otel.scope.version"
SPAN_KIND_ATTR = "span.kind"
STATUS_MESSAGE_ATTR = "otel.status_description"

DEFAULT_RESOURCE_KEYS: tuple[str, ...] = (
    "service.*",
    "telemetry.sdk.*",
    "telemetry.distro.*",
    "deployment.*",
    "host.*",
    "os.*",
    "process.*",
    "container.*",
    "k8s.*",
    "cloud.*",
)
"""Tag keys that describe what produced the data (OpenTelemetry's resource semantic
conventions) rather than the series: exported as Resource attributes. A trailing `*`
matches any rest of the key."""

FALLBACK_BOUNDS: tuple[float, ...] = (
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
    7500.0, 10000.0,
)  # fmt: skip
"""The OpenTelemetry SDK's default explicit bounds, for units without their own."""

DEFAULT_BOUNDS: dict[str, tuple[float, ...]] = {
    # The semantic conventions' advice for http.server.request.duration.
    "s": (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    "ms": FALLBACK_BOUNDS,
    "By": tuple(float(4**i) for i in range(3, 15)),  # 64 B … 256 MiB
}
"""Explicit bucket bounds by unit for exported histograms."""

_KIND_NAMES = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}
_KINDS_BY_NAME = {v: k for k, v in _KIND_NAMES.items()}
_STATUS_NAMES = {
    trace_pb2.Status.STATUS_CODE_UNSET: "unset",
    trace_pb2.Status.STATUS_CODE_OK: "ok",
    trace_pb2.Status.STATUS_CODE_ERROR: "error",
}
_STATUS_BY_NAME = {v: k for k, v in _STATUS_NAMES.items()}

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

# Per-series state is kept for at most this many series; past it the oldest is forgotten
# (a forgotten delta series restarts from a 0 baseline, which the aggregator reads as a
# reset and so loses nothing).
MAX_SERIES_STATE = 100_000
_MAX_TAG_CACHE = 10_000

_PROCESS_START_NS = time.time_ns()

K = TypeVar("K")
V = TypeVar("V")


class OtlpDecodeError(ValueError):
    """A request body that is not a valid OTLP message."""


def _fmt_float(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    return repr(x)


def _fmt_bound(x: float) -> str:
    # Prometheus writes integral bounds without a fraction ("1", "2.5", "+Inf").
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else _fmt_float(x)


def _trim(d: dict[K, V], cap: int) -> None:
    while len(d) > cap:
        del d[next(iter(d))]


# --------------------------------------------------------------------------- attributes


def _any_to_py(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        x = v.double_value
        return x if math.isfinite(x) else _fmt_float(x)
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if which == "array_value":
        return [_any_to_py(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_to_py(kv.value) for kv in v.kvlist_value.values}
    return None


def _any_to_str(v: AnyValue) -> str:
    which = v.WhichOneof("value")
    if which == "string_value":
        return str(v.string_value)
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "int_value":
        return str(v.int_value)
    if which == "double_value":
        return _fmt_float(v.double_value)
    if which is None:
        return ""
    py = _any_to_py(v)
    return py if isinstance(py, str) else json.dumps(py, separators=(",", ":"))


def _scoped_attrs(resource: dict[str, str], scope: Any) -> dict[str, str]:
    """The resource's tags plus the instrumentation scope's name, version and attributes."""
    scoped = dict(resource)
    if scope.name:
        scoped[SCOPE_NAME_TAG] = scope.name
    if scope.version:
        scoped[SCOPE_VERSION_TAG] = scope.version
    _attrs_to_dict(scope.attributes, scoped)
    return scoped


def _attrs_to_dict(attrs: Iterable[KeyValue], into: dict[str, str]) -> dict[str, str]:
    for kv in attrs:
        into[kv.key] = _any_to_str(kv.value)
    return into


def _kvs(pairs: Iterable[tuple[str, str]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in pairs]


def _hex_id(text: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not hexadecimal") from None
    if len(raw) != size:
        raise ValueError(f"{what} {text!r} has {len(raw)} bytes; expected {size}")
    return raw


# ------------------------------------------------------------------------------ export


@dataclass(slots=True)
class EncodedMetrics:
    request: ExportMetricsServiceRequest
    points: int
    """Data points in the request (what a partial success's rejected count refers to)."""
    warnings: list[str] = field(default_factory=list)
    """What could not be exported as asked (the point went out with less detail)."""


@dataclass(slots=True)
class EncodedSpans:
    request: ExportTraceServiceRequest
    spans: int
    rejected: list[str] = field(default_factory=list)
    """Spans that could not be encoded (bad ids), each with the reason."""


@dataclass(slots=True)
class _RawHist:
    start: int
    end: int
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    buckets: list[int] = field(default_factory=list)


class _Attrs:
    """A tag set's attributes, serialized once per encoder and merged into each point
    with `MergeFromString`: building KeyValue messages per point costs three times more
    than all the rest of a point."""

    __slots__ = ("_f7", "_f9", "pairs")

    def __init__(self, pairs: Tags) -> None:
        self.pairs = pairs
        self._f7: bytes | None = None
        self._f9: bytes | None = None

    @property
    def number_point(self) -> bytes:
        """As NumberDataPoint.attributes (field 7)."""
        if self._f7 is None:
            msg = metrics_pb2.NumberDataPoint(attributes=_kvs(self.pairs))
            self._f7 = bytes(msg.SerializeToString())
        return self._f7

    @property
    def field9(self) -> bytes:
        """As HistogramDataPoint.attributes and Span.attributes (both field 9)."""
        if self._f9 is None:
            msg = metrics_pb2.HistogramDataPoint(attributes=_kvs(self.pairs))
            self._f9 = bytes(msg.SerializeToString())
        return self._f9


@dataclass(slots=True)
class _Split:
    """A row's tags taken apart: what goes to the Resource, to the scope, and the rest."""

    resource: Tags
    scope: Tags
    key: Tags
    attrs: _Attrs
    span: tuple[int, str, _Attrs] | None = None
    """For span attributes: (kind, status message, attributes without those two)."""


_Group = dict[tuple[str, int, str], dict[Tags, Any]]


class OtlpEncoder:
    """Builds OTLP export requests from batches. Keeps each counter series' start time
    (so it stays the same from one export to the next), hence one encoder per sink."""

    def __init__(
        self,
        resource: Mapping[str, str] | None = None,
        resource_keys: Iterable[str] = DEFAULT_RESOURCE_KEYS,
        bounds: Mapping[str, Sequence[float]] | None = None,
        scope_name: str = "revopipe",
        scope_version: str = "",
        start_ns: int | None = None,
    ) -> None:
        self.resource = dict(resource or {})
        keys = list(resource_keys)
        self.resource_keys = frozenset(k for k in keys if not k.endswith("*"))
        self.resource_prefixes = tuple(k[:-1] for k in keys if k.endswith("*"))
        self.bounds: dict[str, tuple[float, ...]] = dict(DEFAULT_BOUNDS)
        for unit, b in (bounds or {}).items():
            self.bounds[unit] = tuple(sorted(float(x) for x in b))
        self.scope = (scope_name, scope_version)
        self.start_ns = _PROCESS_START_NS if start_ns is None else start_ns
        self._split_cache: dict[Tags, _Split] = {}
        self._counters: dict[tuple[str, Tags], tuple[int, float, int]] = {}

    def bounds_for(self, unit: str) -> tuple[float, ...]:
        return self.bounds.get(unit, FALLBACK_BOUNDS)

    def _split(self, tags: Tags) -> _Split:
        hit = self._split_cache.get(tags)
        if hit is not None:
            return hit
        res: list[tuple[str, str]] = []
        scope: list[tuple[str, str]] = []
        rest: list[tuple[str, str]] = []
        for kv in tags:
            k = kv[0]
            if k in self.resource_keys or k.startswith(self.resource_prefixes):
                res.append(kv)
            elif k in (SCOPE_NAME_TAG, SCOPE_VERSION_TAG):
                scope.append(kv)
            else:
                rest.append(kv)
        key = tuple(rest)
        out = _Split(tuple(res), tuple(scope), key, _Attrs(key))
        if len(self._split_cache) >= _MAX_TAG_CACHE:
            self._split_cache.clear()
        self._split_cache[tags] = out
        return out

    def _span_parts(self, split: _Split) -> tuple[int, str, _Attrs]:
        if split.span is None:
            # revopipe.trace leaves "internal", the default kind, out of the attributes.
            kind = trace_pb2.Span.SPAN_KIND_INTERNAL
            message = ""
            kept: list[tuple[str, str]] = []
            for k, v in split.key:
                if k == SPAN_KIND_ATTR and v in _KINDS_BY_NAME:
                    kind = _KINDS_BY_NAME[v]
                elif k == STATUS_MESSAGE_ATTR:
                    message = v
                else:
                    kept.append((k, v))
            attrs = split.attrs if len(kept) == len(split.key) else _Attrs(tuple(kept))
            split.span = (kind, message, attrs)
        return split.span

    def _resource_attrs(self, res: Tags) -> list[KeyValue]:
        merged = {**self.resource, **dict(res)}
        return _kvs(sorted(merged.items()))

    def _scope(self, scope: Tags) -> tuple[str, str]:
        if not scope:
            return self.scope
        d = dict(scope)
        return d.get(SCOPE_NAME_TAG, self.scope[0]), d.get(SCOPE_VERSION_TAG, "")

    # -- metrics ---------------------------------------------------------------------

    def metrics(self, batch: Batch) -> EncodedMetrics | None:
        """The metrics request for a batch's metric rows and histogram snapshots, or None
        when it holds neither."""
        snapshots = [e for e in batch.events if isinstance(e, HistogramSnapshot)]
        m = batch.metrics
        if not len(m) and not snapshots:
            return None
        groups: dict[tuple[Tags, Tags], _Group] = {}
        attrs_of: dict[Tags, _Attrs] = {}
        split = self._split

        def group(tags: Tags) -> tuple[_Group, Tags]:
            sp = split(tags)
            g = groups.get((sp.resource, sp.scope))
            if g is None:
                g = groups[(sp.resource, sp.scope)] = {}
            # Points are keyed by their attribute tags; remember the attributes of each.
            attrs_of[sp.key] = sp.attrs
            return g, sp.key

        names, kinds, values, units, stamps, tags = (
            m.names,
            m.kinds,
            m.values,
            m.units,
            m.timestamps,
            m.tags,
        )
        for i in range(len(names)):
            kind = kinds[i]
            g, key = group(tags[i])
            pts = g.get((names[i], kind, units[i]))
            if pts is None:
                pts = g[(names[i], kind, units[i])] = {}
            v = values[i]
            ts = stamps[i]
            if kind == MetricKind.COUNTER or kind == MetricKind.GAUGE:
                # Several rows of one series in a batch: every one is a point.
                rows = pts.get(key)
                if rows is None:
                    pts[key] = [(ts, v, tags[i])]
                else:
                    rows.append((ts, v, tags[i]))
            elif kind == MetricKind.HISTOGRAM:
                bounds = self.bounds_for(units[i])
                h = pts.get(key)
                if h is None:
                    h = pts[key] = _RawHist(ts, ts, buckets=[0] * (len(bounds) + 1))
                if math.isnan(v):
                    continue
                h.start = min(h.start, ts)
                h.end = max(h.end, ts)
                h.count += 1
                h.sum += v
                h.min = min(h.min, v)
                h.max = max(h.max, v)
                h.buckets[bisect.bisect_left(bounds, v)] += 1
            else:  # set
                members = pts.get(key)
                if members is None:
                    members = pts[key] = [ts, set()]
                members[0] = max(members[0], ts)
                members[1].add(0.0 if v == 0 else v)  # -0.0 and 0.0 are one member
        for snap in snapshots:
            g, key = group(snap.tags)
            g.setdefault((snap.name, -1, snap.unit), {}).setdefault(key, []).append(snap)

        req = ExportMetricsServiceRequest()
        n_points = 0
        warnings: list[str] = []
        for (res, scope), metrics in groups.items():
            rm = req.resource_metrics.add()
            rm.resource.attributes.extend(self._resource_attrs(res))
            sm = rm.scope_metrics.add()
            sm.scope.name, sm.scope.version = self._scope(scope)
            for (name, kind, unit), pts in metrics.items():
                metric = sm.metrics.add(name=name, unit=unit)
                if kind == MetricKind.COUNTER:
                    n_points += self._counter_points(metric, name, pts, attrs_of)
                elif kind == MetricKind.GAUGE:
                    add = metric.gauge.data_points.add
                    for key, rows in pts.items():
                        a = attrs_of[key].number_point
                        for ts, v, _ in rows:
                            add(time_unix_nano=ts, as_double=v).MergeFromString(a)
                            n_points += 1
                elif kind == MetricKind.HISTOGRAM:
                    hist = metric.histogram
                    hist.aggregation_temporality = _DELTA
                    bounds = self.bounds_for(unit)
                    for key, h in pts.items():
                        dp = hist.data_points.add(
                            start_time_unix_nano=h.start,
                            time_unix_nano=h.end,
                            count=h.count,
                            sum=h.sum,
                            bucket_counts=h.buckets,
                            explicit_bounds=bounds,
                        )
                        dp.MergeFromString(attrs_of[key].field9)
                        if h.count:
                            dp.min, dp.max = h.min, h.max
                        n_points += 1
                elif kind == MetricKind.SET:
                    add = metric.gauge.data_points.add
                    for key, (ts, members) in pts.items():
                        dp = add(time_unix_nano=ts, as_double=len(members))
                        dp.MergeFromString(attrs_of[key].number_point)
                        n_points += 1
                else:
                    hist = metric.histogram
                    hist.aggregation_temporality = _DELTA
                    bounds = self.bounds_for(unit)
                    for key, snaps in pts.items():
                        for snap in snaps:
                            self._snapshot_point(hist, snap, bounds, attrs_of[key], warnings)
                            n_points += 1
        return EncodedMetrics(req, n_points, warnings)

    def _counter_points(
        self,
        metric: metrics_pb2.Metric,
        name: str,
        pts: dict[Tags, list[tuple[int, float, Tags]]],
        attrs_of: dict[Tags, _Attrs],
    ) -> int:
        s = metric.sum
        s.is_monotonic = True
        s.aggregation_temporality = _CUMULATIVE
        add = s.data_points.add
        state = self._counters
        n = 0
        for key, rows in pts.items():
            a = attrs_of[key].number_point
            for ts, v, tags in rows:
                skey = (name, tags)
                prev = state.get(skey)
                if prev is None:
                    start = min(self.start_ns, ts)
                elif v < prev[1]:
                    # A reset: counting restarted after the previous point.
                    start = min(prev[2], ts)
                else:
                    start = prev[0]
                state[skey] = (start, v, ts)
                add(start_time_unix_nano=start, time_unix_nano=ts, as_double=v).MergeFromString(a)
                n += 1
        _trim(state, MAX_SERIES_STATE)
        return n

    def _snapshot_point(
        self,
        hist: metrics_pb2.Histogram,
        snap: HistogramSnapshot,
        bounds: tuple[float, ...],
        attrs: _Attrs,
        warnings: list[str],
    ) -> None:
        dp = hist.data_points.add(
            start_time_unix_nano=snap.start_ns,
            time_unix_nano=snap.end_ns,
            count=snap.count,
            sum=snap.sum,
        )
        dp.MergeFromString(attrs.field9)
        if snap.count:
            dp.min, dp.max = snap.min, snap.max
        try:
            cumulative = _core.hdr_bucket_counts(snap.hdr, snap.resolution, bounds)
        except ValueError as exc:
            warnings.append(f"histogram {snap.name!r}: buckets left out, HDR unreadable: {exc}")
        else:
            counts: list[int] = []
            below = 0
            for c in cumulative:
                c = min(c, snap.count)  # count is exact; the HDR cannot hold more
                counts.append(max(c - below, 0))
                below = max(below, c)
            counts.append(snap.count - below)
            dp.explicit_bounds.extend(bounds)
            dp.bucket_counts.extend(counts)
        for ex in snap.exemplars:
            try:
                trace_id = _hex_id(ex.trace_id, 16, "trace_id")
                span_id = _hex_id(ex.span_id, 8, "span_id")
            except ValueError as exc:
                warnings.append(f"histogram {snap.name!r}: exemplar left out: {exc}")
                continue
            dp.exemplars.add(
                time_unix_nano=ex.timestamp_ns,
                as_double=ex.value,
                trace_id=trace_id,
                span_id=span_id,
            )

    # -- traces ----------------------------------------------------------------------

    def spans(self, batch: Batch) -> EncodedSpans | None:
        """The traces request for a batch's spans, or None when it has none."""
        spans = [e for e in batch.events if isinstance(e, Span)]
        if not spans:
            return None
        groups: dict[tuple[Tags, Tags], list[tuple[Span, _Split]]] = {}
        rejected: list[str] = []
        for sp in spans:
            split = self._split(sp.attributes)
            key = (split.resource, split.scope)
            members = groups.get(key)
            if members is None:
                groups[key] = [(sp, split)]
            else:
                members.append((sp, split))
        req = ExportTraceServiceRequest()
        n = 0
        unset = trace_pb2.Status.STATUS_CODE_UNSET
        fromhex = bytes.fromhex
        for (res, scope), members in groups.items():
            rs = req.resource_spans.add()
            rs.resource.attributes.extend(self._resource_attrs(res))
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = self._scope(scope)
            add = ss.spans.add
            for sp, split in members:
                try:
                    trace_id = fromhex(sp.trace_id)
                    span_id = fromhex(sp.span_id)
                    parent = fromhex(sp.parent_span_id) if sp.parent_span_id else b""
                except ValueError:
                    trace_id = span_id = parent = b"?"
                if len(trace_id) != 16 or len(span_id) != 8 or len(parent) not in (0, 8):
                    rejected.append(f"span {sp.name!r}: {_span_ids_problem(sp)}")
                    continue
                kind, message, attrs = self._span_parts(split)
                out = add(
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=parent,
                    name=sp.name,
                    kind=kind,
                    start_time_unix_nano=sp.start_ns,
                    end_time_unix_nano=sp.end_ns,
                )
                out.MergeFromString(attrs.field9)
                code = _STATUS_BY_NAME.get(sp.status, unset)
                if code or message:
                    out.status.code = code
                    out.status.message = message
                n += 1
        if not n:
            return EncodedSpans(req, 0, rejected) if rejected else None
        return EncodedSpans(req, n, rejected)


def _span_ids_problem(sp: Span) -> str:
    try:
        _hex_id(sp.trace_id, 16, "trace_id")
        _hex_id(sp.span_id, 8, "span_id")
        if sp.parent_span_id:
            _hex_id(sp.parent_span_id, 8, "parent_span_id")
    except ValueError as exc:
        return str(exc)
    return "invalid ids"


# ------------------------------------------------------------------------------ ingest

Signal = Literal["metrics", "traces"]


@dataclass(slots=True)
class DecodedMetrics:
    metrics: MetricBatch
    points: int
    """OTLP data points taken (one may give several rows)."""
    rejected: int
    """Data points refused, for the response's partial_success."""
    errors: list[str]
    pending: dict[tuple[str, Tags], float]
    """Per-series state to keep once the rows are accepted (`OtlpDecoder.commit`)."""


@dataclass(slots=True)
class DecodedSpans:
    spans: tuple[Span, ...]
    rejected: int
    errors: list[str]


class OtlpDecoder:
    """Turns OTLP requests into revopipe rows and spans. Keeps per-series running totals
    (delta to cumulative) and which series it has seen, so one decoder per source.

    The state changes only through `commit`, called once the rows have been accepted: a
    request refused downstream and sent again must not count twice. Decode and commit of
    one request must not interleave with another's (the caller serialises them)."""

    def __init__(self, start_ns: int | None = None) -> None:
        self.start_ns = now_ns() if start_ns is None else start_ns
        self._known: dict[tuple[str, Tags], float] = {}

    def commit(self, decoded: DecodedMetrics) -> None:
        self._known.update(decoded.pending)
        _trim(self._known, MAX_SERIES_STATE)

    def metrics(self, req: ExportMetricsServiceRequest) -> DecodedMetrics:
        now = now_ns()
        b = MetricBatchBuilder(default_ts=now)
        d = _MetricsRun(self, b, now)
        for rm in req.resource_metrics:
            base = _attrs_to_dict(rm.resource.attributes, {})
            for sm in rm.scope_metrics:
                scoped = _scoped_attrs(base, sm.scope)
                scoped_tags = tuple(sorted(scoped.items()))
                for metric in sm.metrics:
                    d.metric(metric, scoped, scoped_tags)
        return DecodedMetrics(b.build(), d.points, d.rejected, d.errors, d.pending)

    def spans(self, req: ExportTraceServiceRequest) -> DecodedSpans:
        out: list[Span] = []
        rejected = 0
        errors: list[str] = []
        for rs in req.resource_spans:
            base = _attrs_to_dict(rs.resource.attributes, {})
            for ss in rs.scope_spans:
                scoped = _scoped_attrs(base, ss.scope)
                for sp in ss.spans:
                    problem = _span_id_problem(sp)
                    if problem:
                        rejected += 1
                        if len(errors) < 5:
                            errors.append(f"span {sp.name!r}: {problem}")
                        continue
                    attrs = _attrs_to_dict(sp.attributes, dict(scoped))
                    if sp.kind in _KIND_NAMES and sp.kind != trace_pb2.Span.SPAN_KIND_INTERNAL:
                        attrs[SPAN_KIND_ATTR] = _KIND_NAMES[sp.kind]
                    if sp.status.message:
                        attrs[STATUS_MESSAGE_ATTR] = sp.status.message
                    out.append(
                        Span(
                            name=sp.name,
                            trace_id=sp.trace_id.hex(),
                            span_id=sp.span_id.hex(),
                            start_ns=sp.start_time_unix_nano,
                            end_ns=sp.end_time_unix_nano,
                            parent_span_id=sp.parent_span_id.hex() or None,
                            status=_STATUS_NAMES.get(sp.status.code, "unset"),
                            attributes=tuple(sorted(attrs.items())),
                        )
                    )
        return DecodedSpans(tuple(out), rejected, errors)


def _span_id_problem(sp: trace_pb2.Span) -> str:
    if len(sp.trace_id) != 16 or not any(sp.trace_id):
        return f"trace_id must be 16 bytes, not all zero (got {sp.trace_id.hex()!r})"
    if len(sp.span_id) != 8 or not any(sp.span_id):
        return f"span_id must be 8 bytes, not all zero (got {sp.span_id.hex()!r})"
    if len(sp.parent_span_id) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes (got {sp.parent_span_id.hex()!r})"
    return ""


_NumberPoint = metrics_pb2.NumberDataPoint


class _MetricsRun:
    """The decoding of one request: rows go to `b`, state changes to `pending`."""

    def __init__(self, decoder: OtlpDecoder, b: MetricBatchBuilder, now: int) -> None:
        self.decoder = decoder
        self.b = b
        self.now = now
        self.pending: dict[tuple[str, Tags], float] = {}
        self.points = 0
        self.rejected = 0
        self.errors: list[str] = []

    def reject(self, n: int, why: str) -> None:
        self.rejected += n
        if len(self.errors) < 5:
            self.errors.append(why)

    def _prev(self, key: tuple[str, Tags]) -> float | None:
        prev = self.pending.get(key)
        return self.decoder._known.get(key) if prev is None else prev

    def counter(
        self, name: str, unit: str, tags: Tags, ts: int, value: float, delta: bool, start: int
    ) -> None:
        key = (name, tags)
        prev = self._prev(key)
        if delta:
            if prev is None:
                # The aggregator takes a series' first sample as its baseline: start at 0
                # so the first delta counts.
                self.b.add(name, 0.0, MetricKind.COUNTER, unit, tags, ts)
                prev = 0.0
            value += prev
        elif prev is None and start >= self.decoder.start_ns:
            # Counting began after this decoder started: the whole total is new.
            self.b.add(name, 0.0, MetricKind.COUNTER, unit, tags, ts)
        self.b.add(name, value, MetricKind.COUNTER, unit, tags, ts)
        self.pending[key] = value

    def gauge(self, name: str, unit: str, tags: Tags, ts: int, value: float) -> None:
        self.b.add(name, value, MetricKind.GAUGE, unit, tags, ts)

    def metric(self, metric: metrics_pb2.Metric, scoped: dict[str, str], scoped_tags: Tags) -> None:
        which = metric.WhichOneof("data")
        if which is None:
            return
        data = getattr(metric, which)
        name = metric.name
        if not name:
            self.reject(len(data.data_points), f"a {which} metric has no name")
            return
        unit = metric.unit or "1"
        for dp in data.data_points:
            if dp.flags & _NO_RECORDED_VALUE:
                continue  # a staleness marker, not a value
            tags = scoped_tags
            if len(dp.attributes):
                tags = tuple(sorted(_attrs_to_dict(dp.attributes, dict(scoped)).items()))
            ts = dp.time_unix_nano or self.now
            if which in ("gauge", "sum"):
                v = _number(dp)
                if v is None:
                    self.reject(1, f"metric {name!r}: a data point has no value")
                    continue
                if which == "gauge":
                    self.gauge(name, unit, tags, ts, v)
                elif data.is_monotonic:
                    delta = data.aggregation_temporality == _DELTA
                    self.counter(name, unit, tags, ts, v, delta, dp.start_time_unix_nano)
                elif data.aggregation_temporality == _DELTA:
                    key = (name, tags)
                    total = (self._prev(key) or 0.0) + v
                    self.pending[key] = total
                    self.gauge(name, unit, tags, ts, total)
                else:
                    self.gauge(name, unit, tags, ts, v)
            elif which == "summary":
                self.counter(
                    f"{name}.count", "1", tags, ts, dp.count, False, dp.start_time_unix_nano
                )
                self.counter(f"{name}.sum", unit, tags, ts, dp.sum, False, dp.start_time_unix_nano)
                for q in dp.quantile_values:
                    qt = _with_tag(tags, "quantile", _fmt_float(q.quantile))
                    self.gauge(name, unit, qt, ts, q.value)
            else:
                if not self.histogram(name, unit, tags, ts, dp, data, which == "histogram"):
                    continue
            self.points += 1

    def histogram(
        self,
        name: str,
        unit: str,
        tags: Tags,
        ts: int,
        dp: Any,
        data: Any,
        buckets: bool,
    ) -> bool:
        delta = data.aggregation_temporality == _DELTA
        start = dp.start_time_unix_nano
        counts = list(dp.bucket_counts) if buckets else []
        bounds = list(dp.explicit_bounds) if buckets else []
        # No counts means no buckets; otherwise one more count than bounds (the +Inf one).
        if counts and len(counts) != len(bounds) + 1:
            self.reject(
                1,
                f"histogram {name!r}: {len(counts)} bucket counts for {len(bounds)} bounds; "
                "expected one more count than bounds",
            )
            return False
        self.counter(f"{name}.count", "1", tags, ts, dp.count, delta, start)
        if dp.HasField("sum"):
            self.counter(f"{name}.sum", unit, tags, ts, dp.sum, delta, start)
        below = 0
        for bound, c in zip([*bounds, math.inf], counts, strict=False):
            below += c
            le = _with_tag(tags, "le", _fmt_bound(bound))
            self.counter(f"{name}.bucket", "1", le, ts, below, delta, start)
        if dp.HasField("min"):
            self.gauge(f"{name}.min", unit, tags, ts, dp.min)
        if dp.HasField("max"):
            self.gauge(f"{name}.max", unit, tags, ts, dp.max)
        return True


def _number(dp: _NumberPoint) -> float | None:
    which = dp.WhichOneof("value")
    if which == "as_double":
        return float(dp.as_double)
    if which == "as_int":
        return float(dp.as_int)
    return None


def _with_tag(tags: Tags, key: str, value: str) -> Tags:
    return tuple(sorted([*(t for t in tags if t[0] != key), (key, value)]))


# -------------------------------------------------------------------- bodies and replies

_REQUESTS: dict[str, type[Any]] = {
    "metrics": ExportMetricsServiceRequest,
    "traces": ExportTraceServiceRequest,
}
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def parse_protobuf(body: bytes, signal: Signal) -> Any:
    """An ExportMetricsServiceRequest or ExportTraceServiceRequest from protobuf bytes."""
    req = _REQUESTS[signal]()
    try:
        req.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"not a valid OTLP protobuf {signal} request: {exc}") from None
    return req


def parse_json(body: bytes | str, signal: Signal) -> Any:
    """An export request from OTLP/JSON: protobuf's JSON mapping, except that trace and
    span ids are hex. Unknown fields are ignored, as the OTLP specification asks."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise OtlpDecodeError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError(f"expected a JSON object, got {type(data).__name__}")
    _hex_ids_to_base64(data, signal)
    req = _REQUESTS[signal]()
    try:
        json_format.ParseDict(data, req, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpDecodeError(f"not a valid OTLP/JSON {signal} request: {exc}") from None
    return req


def _items(obj: Any, *keys: str) -> list[Any]:
    """The list under the first of `keys` present in a dict (camelCase or snake_case)."""
    if not isinstance(obj, dict):
        return []
    for k in keys:
        v = obj.get(k)
        if isinstance(v, list):
            return v
    return []


def _convert_ids(obj: Any, where: str) -> None:
    if not isinstance(obj, dict):
        return
    for key in _ID_KEYS:
        v = obj.get(key)
        if isinstance(v, str):
            try:
                raw = bytes.fromhex(v)
            except ValueError:
                raise OtlpDecodeError(f"{where}.{key}: {v!r} is not a hex id") from None
            obj[key] = base64.b64encode(raw).decode("ascii")


def _hex_ids_to_base64(data: dict[str, Any], signal: Signal) -> None:
    if signal == "traces":
        for i, rs in enumerate(_items(data, "resourceSpans", "resource_spans")):
            for j, ss in enumerate(_items(rs, "scopeSpans", "scope_spans")):
                for k, sp in enumerate(_items(ss, "spans")):
                    where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                    _convert_ids(sp, where)
                    for n, link in enumerate(_items(sp, "links")):
                        _convert_ids(link, f"{where}.links[{n}]")
        return
    kinds = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram")
    for i, rm in enumerate(_items(data, "resourceMetrics", "resource_metrics")):
        for j, sm in enumerate(_items(rm, "scopeMetrics", "scope_metrics")):
            for k, metric in enumerate(_items(sm, "metrics")):
                if not isinstance(metric, dict):
                    continue
                for kind in kinds:
                    for p, dp in enumerate(_items(metric.get(kind), "dataPoints", "data_points")):
                        for e, ex in enumerate(_items(dp, "exemplars")):
                            where = (
                                f"resourceMetrics[{i}].scopeMetrics[{j}].metrics[{k}]"
                                f".{kind}.dataPoints[{p}].exemplars[{e}]"
                            )
                            _convert_ids(ex, where)


def export_response(signal: Signal, rejected: int, message: str, as_json: bool) -> bytes:
    """The body of a 200 reply, with a partial_success when anything was rejected."""
    resp: Any = (
        ExportMetricsServiceResponse() if signal == "metrics" else ExportTraceServiceResponse()
    )
    if rejected or message:
        ps = resp.partial_success
        if signal == "metrics":
            ps.rejected_data_points = rejected
        else:
            ps.rejected_spans = rejected
        ps.error_message = message
    if as_json:
        return json.dumps(json_format.MessageToDict(resp)).encode()
    return bytes(resp.SerializeToString())


# google.rpc.Code values for the HTTP statuses an OTLP receiver answers with.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 8, 415: 3, 429: 8, 503: 14}


def status_body(http_status: int, message: str, as_json: bool) -> bytes:
    """The body of an OTLP/HTTP error reply: a google.rpc.Status (code, message).

    Encoded by hand (two fields) rather than pulling googleapis-common-protos in."""
    code = _RPC_CODES.get(http_status, 2)  # 2 = UNKNOWN
    if as_json:
        return json.dumps({"code": code, "message": message}).encode()
    msg = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse_status(body: bytes) -> tuple[int, str] | None:
    """(code, message) of a protobuf google.rpc.Status, or None if `body` is not one."""
    code, message, i = 0, "", 0
    try:
        while i < len(body):
            tag, i = _read_varint(body, i)
            field_no, wire = tag >> 3, tag & 7
            if wire == 0:
                value, i = _read_varint(body, i)
                if field_no == 1:
                    code = value
            elif wire == 2:
                size, i = _read_varint(body, i)
                chunk = body[i : i + size]
                if len(chunk) != size:
                    return None
                i += size
                if field_no == 2:
                    message = chunk.decode()
            else:
                return None
    except (IndexError, UnicodeDecodeError):
        return None
    return code, message


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")
