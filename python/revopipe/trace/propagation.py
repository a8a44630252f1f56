"""W3C Trace Context (https://www.w3.org/TR/trace-context/): `traceparent` and
`tracestate` headers in and out.

    00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
    version-trace_id (32 hex)-parent_id (16 hex)-flags (2 hex; bit 0 = sampled)

Parsing never raises: a header that is not valid gives None (a new trace starts), as the
specification asks. Rules applied: lowercase hex only; version `ff` is invalid; version
`00` is exactly 55 characters; a higher version is read by its first four fields when
the header is at least 55 characters and the 56th, if any, is `-`; all-zero trace or
parent ids are invalid. `tracestate` is kept verbatim when valid (at most 32 list members,
each `key=value` by the specification's grammar, no duplicate keys) and dropped otherwise;
it is never read when `traceparent` is invalid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Final

from revopipe.trace.spans import LiveSpan, SpanContext, current_span

__all__ = [
    "extract",
    "extract_asgi",
    "format_traceparent",
    "inject",
    "parse_traceparent",
    "valid_tracestate",
]

MAX_TRACESTATE_MEMBERS: Final = 32

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_KEY = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}"
    r"|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
)
# value: up to 256 printable ASCII characters except ',' and '=', the last not a space
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_OWS = " \t"


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """(trace_id, parent_id, flags) of a `traceparent` value, or None if it is invalid."""
    if not isinstance(value, str):
        return None
    v = value.strip(_OWS)
    if len(v) < 55:
        return None
    m = _TRACEPARENT.match(v)
    if m is None:
        return None
    version = m.group(1)
    if version == "ff":
        return None
    if version == "00":
        if len(v) != 55:
            return None
    elif len(v) > 55 and v[55] != "-":
        return None
    trace_id = int(m.group(2), 16)
    parent_id = int(m.group(3), 16)
    if trace_id == 0 or parent_id == 0:
        return None
    return trace_id, parent_id, int(m.group(4), 16)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    """The version-00 `traceparent` value."""
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def valid_tracestate(value: str) -> bool:
    """Whether a (combined) `tracestate` value follows the specification's grammar: list
    members `key=value` separated by commas with optional spaces/tabs around them, empty
    members allowed, at most 32 members, no key twice."""
    if not isinstance(value, str):
        return False
    keys: set[str] = set()
    for raw in value.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        key, eq, val = member.partition("=")
        if not eq or _KEY.fullmatch(key) is None or _VALUE.fullmatch(val) is None:
            return False
        if key in keys:
            return False
        keys.add(key)
        if len(keys) > MAX_TRACESTATE_MEMBERS:
            return False
    return True


def _context(traceparent: str | None, tracestate: str | None) -> SpanContext | None:
    if traceparent is None:
        return None
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    trace_id, parent_id, flags = parsed
    state = ""
    if tracestate:
        state = tracestate.strip(_OWS)
        if not valid_tracestate(state):
            state = ""
    return SpanContext(trace_id, parent_id, bool(flags & 1), state)


HeaderPairs = Iterable[tuple[str | bytes, str | bytes]]


def extract(headers: Mapping[str, str] | HeaderPairs) -> SpanContext | None:
    """The remote parent named by `traceparent` / `tracestate` in a request's headers, or
    None (missing or invalid: start a new trace). `headers` is a mapping (a dict, httpx
    or Starlette `Headers`; names matched without regard to case) or (name, value) pairs
    (ASGI/WSGI style, str or bytes). Several `traceparent` headers make it invalid; several
    `tracestate` headers are joined with commas. Never raises."""
    try:
        if isinstance(headers, Mapping):
            return _from_mapping(headers)
        return _from_pairs(headers)
    except Exception:  # a header object we cannot read is no parent, never an error
        return None


def _from_mapping(headers: Mapping[str, str]) -> SpanContext | None:
    tp = headers.get("traceparent")
    ts = headers.get("tracestate")
    if tp is None:
        # A plain dict is case-sensitive; header names are not.
        for k, v in headers.items():
            name = k.lower() if isinstance(k, str) else None
            if name == "traceparent":
                if tp is not None:
                    return None
                tp = v
            elif name == "tracestate":
                ts = v if ts is None else f"{ts},{v}"
    if not isinstance(tp, str) or (ts is not None and not isinstance(ts, str)):
        return None
    return _context(tp, ts)


def _from_pairs(headers: HeaderPairs) -> SpanContext | None:
    tp: str | None = None
    states: list[str] = []
    for k, v in headers:
        name = k.decode("latin-1") if isinstance(k, bytes) else k
        if len(name) != 11 and len(name) != 10:
            continue
        name = name.lower()
        if name == "traceparent":
            if tp is not None:
                return None
            tp = v.decode("latin-1") if isinstance(v, bytes) else v
        elif name == "tracestate":
            states.append(v.decode("latin-1") if isinstance(v, bytes) else v)
    return _context(tp, ",".join(states) if states else None)


def extract_asgi(headers: Iterable[tuple[bytes, bytes]]) -> SpanContext | None:
    """`extract` for an ASGI scope's `headers` (lowercase byte names): the fast path of
    the middleware, skipping the work when no `traceparent` is present."""
    tp: bytes | None = None
    states: list[bytes] = []
    try:
        for k, v in headers:
            if k == b"traceparent":
                if tp is not None:
                    return None
                tp = v
            elif k == b"tracestate":
                states.append(v)
        if tp is None:
            return None
        return _context(
            tp.decode("latin-1"), b",".join(states).decode("latin-1") if states else None
        )
    except Exception:  # a malformed scope is no parent, never an error
        return None


def inject(
    headers: MutableMapping[str, str], span: LiveSpan | SpanContext | None = None
) -> MutableMapping[str, str]:
    """Write `traceparent` (and `tracestate`, when the trace has one) for `span`, by
    default the current span, into `headers`; with no span, leave them as they are.
    Returns `headers`."""
    s = current_span() if span is None else span
    if s is None:
        return headers
    t = s._trace
    headers["traceparent"] = format_traceparent(t[0], s.span_id, t[1])
    if t[2]:
        headers["tracestate"] = t[2]
    return headers
