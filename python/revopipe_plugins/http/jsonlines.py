"""The `/ingest` body: JSON lines in the shape the `jsonl` sink writes.

A metric line: `{"type": "metric", "name", "kind", "value", "unit", "timestamp", "tags"}`
(`type`, `kind` = gauge, `unit` = "1", `timestamp` = now and `tags` are optional; a null
value is NaN, as the `jsonl` sink writes it). A span line: `{"type": "span", "name",
"trace_id", "span_id", "parent_span_id", "start_ns", "end_ns", "status", "attributes"}`.
A `histogram_snapshot` line carries `HistogramSnapshot.to_dict()` (its HDR histogram is
checked), so windows from `app` sources stay mergeable across revopipes.
Unknown keys are errors, so a typo (`"tag"`) is refused rather than silently dropped.

The whole body is parsed before anything is accepted: one bad line refuses the request,
so a client that fixes it and sends again duplicates nothing.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Mapping
from typing import Any

from revopipe import _core
from revopipe.batch import MetricBatch, MetricBatchBuilder
from revopipe.events import Exemplar, HistogramSnapshot, MetricKind, Span, Tags

_METRIC_KEYS = frozenset({"type", "name", "kind", "value", "unit", "timestamp", "tags"})
_SPAN_KEYS = frozenset(
    {
        "type",
        "name",
        "trace_id",
        "span_id",
        "parent_span_id",
        "start_ns",
        "end_ns",
        "status",
        "attributes",
    }
)
_SNAPSHOT_KEYS = frozenset(
    {
        "type",
        "name",
        "unit",
        "start_ns",
        "end_ns",
        "count",
        "sum",
        "min",
        "max",
        "hdr",
        "resolution",
        "tags",
        "exemplars",
    }
)
_EXEMPLAR_KEYS = frozenset({"value", "trace_id", "span_id", "timestamp_ns"})
_KINDS = {k.label: k for k in MetricKind}
_STATUSES = frozenset({"ok", "error", "unset"})
_HEX = re.compile(r"[0-9a-fA-F]*")
_MAX_NS = 2**63 - 1


class IngestError(ValueError):
    """A line that cannot be accepted: which line (1-based), which key, and why."""

    def __init__(self, line: int, key: str | None, message: str) -> None:
        self.line = line
        self.key = key
        self.reason = message
        where = f"line {line}" + (f", key {key!r}" if key else "")
        super().__init__(f"{where}: {message}")


def _describe(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {json.dumps(v)}"
    if isinstance(v, str):
        shown = v if len(v) <= 40 else v[:40] + "…"
        return f"string {shown!r}"
    if isinstance(v, int | float):
        return f"number {v!r}"
    return "an array" if isinstance(v, list) else "an object"


# The C scanner behind json.loads, called directly: json.loads costs 3-4 times more per
# line in its wrapping (encoding detection, whitespace handling) than in the scanning.
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _parse_line(raw: str, line: int) -> dict[str, Any]:
    try:
        obj, end = _SCAN(raw, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    if end != len(raw):
        # The slow way, for its precise message.
        try:
            json.loads(raw)
        except json.JSONDecodeError as exc:
            raise IngestError(
                line, None, f"not valid JSON: {exc.msg} at column {exc.colno}"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise IngestError(line, None, f"not valid JSON: {exc}") from None
        raise IngestError(line, None, "not valid JSON")
    if not isinstance(obj, dict):
        raise IngestError(line, None, f"expected a JSON object, got {_describe(obj)}")
    return obj


def _ns(obj: Mapping[str, Any], key: str, line: int, default: int | None) -> int:
    v = obj.get(key)
    if v is None:
        if default is None:
            raise IngestError(line, key, "required: integer nanoseconds since the Unix epoch")
        return default
    # JSON numbers from some clients arrive as floats (1.7e18): take them when integral.
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MAX_NS:
        raise IngestError(
            line, key, f"expected integer nanoseconds since the Unix epoch, got {_describe(v)}"
        )
    return v


def _str(obj: Mapping[str, Any], key: str, line: int, default: str | None) -> str:
    v = obj.get(key)
    if v is None:
        if default is None:
            raise IngestError(line, key, "required: a non-empty string")
        return default
    if not isinstance(v, str):
        raise IngestError(line, key, f"expected a string, got {_describe(v)}")
    return v


def _tags(obj: Mapping[str, Any], key: str, line: int) -> Tags:
    v = obj.get(key)
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise IngestError(line, key, f"expected an object of string values, got {_describe(v)}")
    out: list[tuple[str, str]] = []
    for k, x in v.items():
        if isinstance(x, str):
            out.append((k, x))
        elif isinstance(x, bool):
            out.append((k, "true" if x else "false"))
        elif isinstance(x, int | float):
            out.append((k, str(x)))
        else:
            raise IngestError(
                line, f"{key}.{k}", f"expected a string, number or boolean, got {_describe(x)}"
            )
    out.sort()
    return tuple(out)


def _hex_id(obj: Mapping[str, Any], key: str, line: int, size: int, optional: bool) -> str | None:
    v = obj.get(key)
    if v is None or (optional and v == ""):
        if optional:
            return None
        raise IngestError(line, key, f"required: {size * 2} hex digits")
    if not isinstance(v, str) or len(v) != size * 2 or not _HEX.fullmatch(v):
        raise IngestError(line, key, f"expected {size * 2} hex digits, got {_describe(v)}")
    if not v.strip("0"):
        raise IngestError(line, key, "an all-zero id is invalid (W3C trace context)")
    return v.lower()


def _unknown(obj: Mapping[str, Any], allowed: frozenset[str], line: int, what: str) -> None:
    if obj.keys() <= allowed:
        return
    extra = sorted(set(obj) - allowed)
    if extra:
        raise IngestError(
            line,
            extra[0],
            f"unknown key in a {what} line; expected some of " + ", ".join(sorted(allowed)),
        )


def _metric(obj: Mapping[str, Any], line: int, now: int, b: MetricBatchBuilder) -> None:
    _unknown(obj, _METRIC_KEYS, line, "metric")
    name = _str(obj, "name", line, None)
    if not name:
        raise IngestError(line, "name", "required: a non-empty string")
    kind_text = _str(obj, "kind", line, "gauge")
    kind = _KINDS.get(kind_text)
    if kind is None:
        raise IngestError(
            line, "kind", f"unknown kind {kind_text!r}; expected one of " + ", ".join(_KINDS)
        )
    if "value" not in obj:
        raise IngestError(line, "value", "required: a number (null for NaN)")
    v = obj["value"]
    if v is None:
        value = math.nan
    elif isinstance(v, bool) or not isinstance(v, int | float):
        raise IngestError(line, "value", f"expected a number, got {_describe(v)}")
    else:
        try:
            value = float(v)
        except OverflowError:
            raise IngestError(line, "value", "number too large for a 64-bit float") from None
    unit = _str(obj, "unit", line, "1")
    ts = _ns(obj, "timestamp", line, now)
    b.add(name, value, kind, unit, _tags(obj, "tags", line), ts)


def _span(obj: Mapping[str, Any], line: int) -> Span:
    _unknown(obj, _SPAN_KEYS, line, "span")
    name = _str(obj, "name", line, None)
    trace_id = _hex_id(obj, "trace_id", line, 16, False)
    span_id = _hex_id(obj, "span_id", line, 8, False)
    parent = _hex_id(obj, "parent_span_id", line, 8, True)
    start = _ns(obj, "start_ns", line, None)
    end = _ns(obj, "end_ns", line, None)
    if end < start:
        raise IngestError(line, "end_ns", f"ends ({end}) before it starts ({start})")
    status = _str(obj, "status", line, "ok")
    if status not in _STATUSES:
        raise IngestError(
            line, "status", f"unknown status {status!r}; expected one of ok, error, unset"
        )
    assert trace_id is not None and span_id is not None
    return Span(name, trace_id, span_id, start, end, parent, status, _tags(obj, "attributes", line))


def _number(obj: Mapping[str, Any], key: str, line: int) -> float:
    v = obj.get(key, _MISSING)
    if v is _MISSING:
        raise IngestError(line, key, "required: a number")
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise IngestError(line, key, f"expected a number, got {_describe(v)}")
    try:
        return float(v)
    except OverflowError:
        raise IngestError(line, key, "number too large for a 64-bit float") from None


_MISSING = object()


def _snapshot(obj: Mapping[str, Any], line: int) -> HistogramSnapshot:
    _unknown(obj, _SNAPSHOT_KEYS, line, "histogram_snapshot")
    name = _str(obj, "name", line, None)
    if not name:
        raise IngestError(line, "name", "required: a non-empty string")
    start = _ns(obj, "start_ns", line, None)
    end = _ns(obj, "end_ns", line, None)
    count = obj.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise IngestError(line, "count", f"expected a whole number >= 0, got {_describe(count)}")
    resolution = _number(obj, "resolution", line)
    if not resolution > 0 or math.isinf(resolution):
        raise IngestError(line, "resolution", "expected a positive number")
    hdr = _str(obj, "hdr", line, None)
    try:
        _core.hdr_bucket_counts(hdr, resolution, [])
    except ValueError as exc:
        raise IngestError(line, "hdr", f"not a base64 HdrHistogram V2 encoding: {exc}") from None
    raw = obj.get("exemplars") or []
    if not isinstance(raw, list):
        raise IngestError(line, "exemplars", f"expected an array, got {_describe(raw)}")
    exemplars: list[Exemplar] = []
    for n, ex in enumerate(raw):
        where = f"exemplars[{n}]"
        if not isinstance(ex, dict) or not ex.keys() <= _EXEMPLAR_KEYS:
            raise IngestError(
                line, where, "expected an object of value, trace_id, span_id, timestamp_ns"
            )
        trace_id = _hex_id(ex, "trace_id", line, 16, False)
        span_id = _hex_id(ex, "span_id", line, 8, False)
        assert trace_id is not None and span_id is not None
        exemplars.append(
            Exemplar(
                _number(ex, "value", line), trace_id, span_id, _ns(ex, "timestamp_ns", line, None)
            )
        )
    return HistogramSnapshot(
        name=name,
        unit=_str(obj, "unit", line, "1"),
        start_ns=start,
        end_ns=end,
        count=count,
        sum=_number(obj, "sum", line),
        min=_number(obj, "min", line),
        max=_number(obj, "max", line),
        hdr=hdr,
        resolution=resolution,
        tags=_tags(obj, "tags", line),
        exemplars=tuple(exemplars),
    )


def parse_lines(body: bytes, now: int) -> tuple[MetricBatch, list[Span | HistogramSnapshot]]:
    """The metric rows and other events of a JSON-lines body; `now` stamps metrics
    without a timestamp. Raises IngestError for the first bad line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        column = exc.start - body.rfind(b"\n", 0, exc.start)
        raise IngestError(line, None, f"not UTF-8 ({exc.reason} at byte {column})") from None
    b = MetricBatchBuilder(default_ts=now)
    events: list[Span | HistogramSnapshot] = []
    for i, raw in enumerate(text.split("\n"), 1):
        raw = raw.strip()
        if not raw:
            continue
        obj = _parse_line(raw, i)
        kind = obj.get("type", "metric")
        if kind == "metric":
            _metric(obj, i, now, b)
        elif kind == "span":
            events.append(_span(obj, i))
        elif kind == "histogram_snapshot":
            events.append(_snapshot(obj, i))
        else:
            raise IngestError(
                i,
                "type",
                f"unsupported type {_describe(kind)}; expected 'metric', 'span' or "
                "'histogram_snapshot'",
            )
    return b.build(), events
