"""Spans: the live objects a service opens and ends, the current span, sampling and the
buffer of finished spans that the `app` source drains.

The hot path (`with span(...)`: `LiveSpan.__init__`, `__enter__`, `__exit__`) does the
least it can: ids are integers from a private `random.Random`, times are two
`perf_counter_ns()` readings, attributes stay a dict, and a finished span is appended to a
deque as it is. Hex ids, wall-clock times and sorted attribute tags (the
`revopipe.events.Span` event) are only built when the buffer is drained, off the
request path.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast, overload

from revopipe.events import Span

__all__ = [
    "CURRENT",
    "LiveSpan",
    "SpanContext",
    "SpanKind",
    "TraceConfig",
    "bind_context",
    "buffered_spans",
    "clear",
    "configure",
    "current_span",
    "drain",
    "dropped_spans",
    "get_config",
    "span",
    "start_span",
    "traced",
]

P = ParamSpec("P")
R = TypeVar("R")

SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
Status = Literal["unset", "ok", "error"]

SPAN_KIND_ATTR: Final = "span.kind"
STATUS_DESCRIPTION_ATTR: Final = "otel.status_description"
"""The attribute keys under which kind and status message travel on a `Span` event (the
convention `revopipe.wire.otlp` maps to the OTLP span kind and status message)."""

_MASK64: Final = (1 << 64) - 1


class _Current:
    """The `parent=` default: the span current in the caller's context."""

    def __repr__(self) -> str:
        return "CURRENT"


CURRENT: Final = _Current()


TraceInfo = tuple[int, bool, str]
"""(trace_id, sampled, tracestate): what every span of one trace shares. One tuple per
trace, referenced by each of its spans, so opening a child copies one reference."""


class _Identity:
    """Reading a span's ids, shared by local (`LiveSpan`) and remote (`SpanContext`) spans."""

    __slots__ = ("_trace", "span_id")

    _trace: TraceInfo
    span_id: int

    @property
    def trace_id(self) -> int:
        return self._trace[0]

    @property
    def sampled(self) -> bool:
        return self._trace[1]

    @property
    def tracestate(self) -> str:
        return self._trace[2]

    @property
    def trace_id_hex(self) -> str:
        return f"{self._trace[0]:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"


class SpanContext(_Identity):
    """The identity of a span that is not a `LiveSpan` of this process: a remote parent
    read from a `traceparent` header (`revopipe.trace.extract`), or one built by hand."""

    __slots__ = ()

    def __init__(self, trace_id: int, span_id: int, sampled: bool, tracestate: str = "") -> None:
        self._trace = (trace_id, sampled, tracestate)
        self.span_id = span_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpanContext):
            return NotImplemented
        return (self._trace, self.span_id) == (other._trace, other.span_id)

    def __hash__(self) -> int:
        return hash((self._trace, self.span_id))

    def __repr__(self) -> str:
        return (
            f"SpanContext(trace_id={self.trace_id_hex}, span_id={self.span_id_hex}, "
            f"sampled={self.sampled}, tracestate={self.tracestate!r})"
        )


# ------------------------------------------------------------------------------ state
# Module globals rather than an object's attributes: the hot path reads them with one
# cached LOAD_GLOBAL each. `configure` rebinds them.

_rng = random.Random()
_randbits = _rng.getrandbits
_perf = time.perf_counter_ns
_current: contextvars.ContextVar[LiveSpan | None] = contextvars.ContextVar(
    "revopipe_current_span", default=None
)
_get_current = _current.get
_set_current = _current.set
_reset_current = _current.reset

_buffer: deque[LiveSpan] = deque()
_append = _buffer.append
_max_buffered = 10_000
_dropped = 0
_sample_bound = 1 << 64
"""A root span is sampled when the low 64 bits of its trace id are below this (as
OpenTelemetry's TraceIdRatioBased does); 2**64 samples everything."""
_errors_always = True
_ratio = 1.0
_config_lock = threading.Lock()


def _reseed() -> None:
    # A forked worker (gunicorn, multiprocessing) must not repeat its parent's ids.
    _rng.seed(os.urandom(32))


_reseed()
os.register_at_fork(after_in_child=_reseed)


def _wall_offset_ns() -> int:
    """wall-clock ns minus perf_counter ns, read as a pair as close together as we can."""
    best = None
    for _ in range(3):
        p0 = _perf()
        w = time.time_ns()
        p1 = _perf()
        if best is None or p1 - p0 < best[0]:
            best = (p1 - p0, w - (p0 + p1) // 2)
    assert best is not None
    return best[1]


_offset = _wall_offset_ns()


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """The process's tracing settings (`revopipe.trace.configure`)."""

    sample_ratio: float
    """Share of new traces sampled, decided from the trace id (0.0 .. 1.0)."""
    always_on_error: bool
    """Keep a span that ends with status error even when its trace is not sampled."""
    max_buffered: int
    """Finished spans held until the `app` source drains them; more are dropped and
    counted (`dropped_spans()`)."""


def configure(
    sample_ratio: float | None = None,
    always_on_error: bool | None = None,
    max_buffered: int | None = None,
) -> TraceConfig:
    """Change the settings given (the others stay) and return the result.

    `sample_ratio` decides for root spans only: a span with a parent follows its parent's
    sampled flag, local or from a `traceparent`, so a trace is kept or dropped whole. The
    decision is deterministic in the trace id, like OpenTelemetry's TraceIdRatioBased, so
    services sharing a ratio agree even without a header. `always_on_error` keeps a span
    that ends in error whatever the decision; `max_buffered` bounds the finished spans
    waiting for the `app` source.
    """
    global _sample_bound, _errors_always, _max_buffered, _ratio
    with _config_lock:
        if sample_ratio is not None:
            ratio = float(sample_ratio)
            if not 0.0 <= ratio <= 1.0:  # also rejects NaN
                raise ValueError(
                    f"revopipe.trace.configure: sample_ratio must be within [0, 1], got "
                    f"{sample_ratio!r}; use 1.0 to keep every trace, 0.0 for errors only"
                )
            _ratio = ratio
            _sample_bound = round(ratio * (1 << 64))
        if always_on_error is not None:
            _errors_always = bool(always_on_error)
        if max_buffered is not None:
            if isinstance(max_buffered, bool) or int(max_buffered) != max_buffered:
                raise TypeError(
                    f"revopipe.trace.configure: max_buffered must be an int, got {max_buffered!r}"
                )
            if max_buffered < 1:
                raise ValueError(
                    f"revopipe.trace.configure: max_buffered must be >= 1, got {max_buffered}"
                )
            _max_buffered = int(max_buffered)
        return get_config()


def get_config() -> TraceConfig:
    return TraceConfig(_ratio, _errors_always, _max_buffered)


def dropped_spans() -> int:
    """Finished spans dropped since the process started because the buffer was full (the
    `app` source was not draining fast enough, or there is none)."""
    return _dropped


def buffered_spans() -> int:
    """Finished spans waiting to be drained."""
    return len(_buffer)


def current_span() -> LiveSpan | None:
    """The innermost span open in this context (thread or asyncio task), or None."""
    return _get_current()


# ------------------------------------------------------------------------------ spans


class LiveSpan(_Identity):
    """A span being recorded. Use it as a context manager (`with trace.span(...)`), which
    makes it the current span inside the block, or get a started one from `start_span`
    and call `end()`.

    Ids are integers (`trace_id` 128 bits, `span_id` 64 bits, `parent_id` 0 for a root);
    `trace_id_hex` / `span_id_hex` give their W3C form. A span that is not sampled still
    has ids and propagates them; it is only not exported (unless it ends in error and
    `always_on_error` is set).
    """

    # Few fields, each stored once: at ~30 ns a store on a slow machine, the stores are a
    # large share of a span. Trace-wide values live in one shared tuple (`_trace`); the
    # parent's id is read from the parent when the span is exported.
    # `_trace` and `span_id` are `_Identity`'s slots.
    __slots__ = (
        "_parent",
        "_token",
        "attributes",
        "end_perf",
        "kind",
        "name",
        "start_perf",
        "status",
    )

    name: str
    attributes: Mapping[str, object] | None
    kind: SpanKind
    status: Status
    start_perf: int
    end_perf: int
    _parent: LiveSpan | SpanContext | _Current | None

    def __init__(
        self,
        name: str,
        attributes: Mapping[str, object] | None = None,
        kind: SpanKind = "internal",
        parent: LiveSpan | SpanContext | _Current | None = CURRENT,
    ) -> None:
        self.name = name
        # Never mutated in place (set_attribute copies): the caller's dict stays theirs.
        self.attributes = attributes
        self.kind = kind
        self._parent = parent
        self.status = "unset"

    def __enter__(self) -> LiveSpan:
        parent = self._parent
        if parent is CURRENT:
            parent = self._parent = _get_current()
        if parent is None:
            tid = _randbits(128) or 1
            self._trace = (tid, (tid & _MASK64) < _sample_bound, "")
        else:
            self._trace = parent._trace  # type: ignore[union-attr]
        self.span_id = _randbits(64) or 1
        self._token = _set_current(self)
        self.start_perf = _perf()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end_perf = _perf()
        # Not contextlib.suppress: a with-block costs more than the rest of this method.
        try:  # noqa: SIM105
            _reset_current(self._token)
        except (ValueError, RuntimeError):
            # Ended in another context than it began (a thread, a callback): the
            # context it was current in is not ours to restore.
            pass
        if exc is not None and isinstance(exc, Exception):
            self._escaped(exc)
        # The same export as `end()`, written out: a method call would add ~10% to a span.
        if self._trace[1] or (_errors_always and self.status == "error"):
            if len(_buffer) < _max_buffered:
                _append(self)
            else:
                global _dropped
                _dropped += 1

    def _begin(self) -> None:
        """Start without becoming current (`start_span`)."""
        parent = self._parent
        if parent is CURRENT:
            parent = self._parent = _get_current()
        if parent is None:
            tid = _randbits(128) or 1
            self._trace = (tid, (tid & _MASK64) < _sample_bound, "")
        else:
            self._trace = parent._trace  # type: ignore[union-attr]
        self.span_id = _randbits(64) or 1
        self.end_perf = 0
        self.start_perf = _perf()

    def end(self, exc: BaseException | None = None) -> None:
        """End a span from `start_span` (ending twice does nothing). An exception given
        is recorded and marks the span as failed, as one escaping a `with` block does."""
        if getattr(self, "end_perf", 0):
            return
        self.end_perf = _perf()
        if exc is not None and isinstance(exc, Exception):
            self._escaped(exc)
        if self._trace[1] or (_errors_always and self.status == "error"):
            if len(_buffer) < _max_buffered:
                _append(self)
            else:
                global _dropped
                _dropped += 1

    def _escaped(self, exc: Exception) -> None:
        # Runs after end_perf is set, so it writes the fields directly.
        info = _exception_attributes(exc)
        if self.status != "error":
            self.status = "error"
            info[STATUS_DESCRIPTION_ATTR] = f"{type(exc).__name__}: {exc}"
        a = self.attributes
        self.attributes = {**a, **info} if a else info

    # -------------------------------------------------------------------- recording

    def set_attribute(self, key: str, value: object) -> None:
        """Set one attribute (ignored once the span has ended)."""
        if getattr(self, "end_perf", 0):
            return
        a = self.attributes
        self.attributes = {**a, key: value} if a else {key: value}

    def set_attributes(self, attributes: Mapping[str, object]) -> None:
        """Set several attributes at once (ignored once the span has ended)."""
        if not attributes:
            return
        if getattr(self, "end_perf", 0):
            return
        a = self.attributes
        self.attributes = {**a, **attributes} if a else dict(attributes)

    def set_status(self, status: Status, description: str | None = None) -> None:
        """ "ok", "error" or "unset"; an error's description travels as the
        `otel.status_description` attribute. Ignored once the span has ended."""
        if status not in ("unset", "ok", "error"):
            raise ValueError(
                f"span {self.name!r}: status must be 'unset', 'ok' or 'error', got {status!r}"
            )
        if getattr(self, "end_perf", 0):
            return
        self.status = status
        a = dict(self.attributes) if self.attributes else {}
        a.pop(STATUS_DESCRIPTION_ATTR, None)
        if status == "error" and description:
            a[STATUS_DESCRIPTION_ATTR] = description
        self.attributes = a or None

    def record_exception(self, exc: BaseException) -> None:
        """Record an exception's type and message as attributes (`exception.type`,
        `exception.message`) without changing the status, as OpenTelemetry does; one
        escaping the span also marks it as failed."""
        self.set_attributes(_exception_attributes(exc))

    # -------------------------------------------------------------------- reading

    @property
    def parent_id(self) -> int:
        """The parent's span id, 0 for a root."""
        p = self._parent
        return p.span_id if isinstance(p, LiveSpan | SpanContext) else 0

    @property
    def context(self) -> SpanContext:
        t = self._trace
        return SpanContext(t[0], self.span_id, t[1], t[2])

    @property
    def ended(self) -> bool:
        return bool(getattr(self, "end_perf", 0))

    @property
    def status_description(self) -> str | None:
        a = self.attributes
        d = a.get(STATUS_DESCRIPTION_ATTR) if a else None
        return None if d is None else str(d)

    @property
    def exported(self) -> bool:
        """Whether this span goes (or, still open, would go as it stands) to the
        pipeline: sampled, or failed with `always_on_error` set."""
        return self._trace[1] or (_errors_always and self.status == "error")

    @property
    def duration_s(self) -> float:
        """Seconds from start to end (to now while open)."""
        return ((getattr(self, "end_perf", 0) or _perf()) - self.start_perf) / 1e9

    def to_event(self, offset_ns: int | None = None) -> Span:
        """The finished span as a `revopipe.events.Span`; the kind travels as the
        `span.kind` attribute (unless "internal") and an error's message as
        `otel.status_description`."""
        off = _offset if offset_ns is None else offset_ns
        # The pipeline side of every exported span: written for speed, make_tags inlined.
        attrs = self.attributes
        tags: list[tuple[str, str]] = (
            [
                (k if type(k) is str else str(k), v if type(v) is str else str(v))
                for k, v in attrs.items()
            ]
            if attrs
            else []
        )
        if self.kind != "internal":
            tags.append((SPAN_KIND_ATTR, self.kind))
        if len(tags) > 1:
            tags.sort()
        end = getattr(self, "end_perf", 0) or _perf()
        p = self._parent
        parent = p.span_id if isinstance(p, LiveSpan | SpanContext) else 0
        return Span(
            self.name,
            f"{self._trace[0]:032x}",
            f"{self.span_id:016x}",
            self.start_perf + off,
            end + off,
            f"{parent:016x}" if parent else None,
            self.status,
            tuple(tags),
        )

    def __repr__(self) -> str:
        ids = (
            f" trace_id={self._trace[0]:032x} span_id={self.span_id:016x}"
            if hasattr(self, "span_id")
            else " (not started)"
        )
        return f"<LiveSpan {self.name!r}{ids} {self.status}>"


def _exception_attributes(exc: BaseException) -> dict[str, object]:
    t = type(exc)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    return {"exception.type": name, "exception.message": str(exc)}


span = LiveSpan
"""`with revopipe.trace.span("name", {"k": "v"}) as s:` opens a child of the current span
(or a new trace) and makes it current in the block; `kind=` and `parent=` are optional."""


def start_span(
    name: str,
    attributes: Mapping[str, object] | None = None,
    kind: SpanKind = "internal",
    parent: LiveSpan | SpanContext | _Current | None = CURRENT,
) -> LiveSpan:
    """A started span that is *not* made current; end it with `end()`. For work whose
    start and end are in different callbacks (an httpx request and response hook)."""
    s = LiveSpan(name, attributes, kind, parent)
    s._begin()
    return s


# ------------------------------------------------------------------------------ decorator


@overload
def traced(
    name: Callable[P, R],
) -> Callable[P, R]: ...


@overload
def traced(
    name: str | None = None,
    attributes: Mapping[str, object] | None = None,
    kind: SpanKind = "internal",
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def traced(
    name: str | Callable[P, R] | None = None,
    attributes: Mapping[str, object] | None = None,
    kind: SpanKind = "internal",
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace every call of a function, sync or async: `@traced`, `@traced("name")`,
    `@traced("name", {"k": "v"})`. The span is named after the function's qualified name
    unless given one, and is current while the function runs. (For a generator function
    the span covers creating the generator, not iterating it: trace the loop instead.)"""
    if callable(name):
        return _decorate(name, None, None, "internal")

    def decorator(fn: Callable[P, R]) -> Callable[P, R]:
        return _decorate(fn, name, attributes, kind)

    return decorator


def _decorate(
    fn: Callable[P, R],
    name: str | None,
    attributes: Mapping[str, object] | None,
    kind: SpanKind,
) -> Callable[P, R]:
    span_name = name or getattr(fn, "__qualname__", None) or repr(fn)
    attrs = dict(attributes) if attributes else None

    if inspect.iscoroutinefunction(fn):
        afn = fn

        @functools.wraps(fn)
        async def traced_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            with LiveSpan(span_name, attrs, kind):
                return await afn(*args, **kwargs)

        return cast("Callable[P, R]", traced_async)

    @functools.wraps(fn)
    def traced_sync(*args: P.args, **kwargs: P.kwargs) -> R:
        with LiveSpan(span_name, attrs, kind):
            return fn(*args, **kwargs)

    return traced_sync


# ------------------------------------------------------------------------------ threads


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` wrapped to run in a copy of the caller's context, so spans it opens are
    children of the span current *here*, in whichever thread it later runs:
    `executor.submit(trace.bind_context(work), item)`. (asyncio tasks and
    `asyncio.to_thread` copy the context by themselves; plain threads and executors do
    not.) Equivalent to `functools.partial(contextvars.copy_context().run, fn)`."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def in_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.run(fn, *args, **kwargs)

    return in_context


# ------------------------------------------------------------------------------ draining


def drain(limit: int | None = None) -> list[Span]:
    """Take the finished spans from the buffer (at most `limit`), oldest first, as
    `revopipe.events.Span` events. Safe while other threads are ending spans."""
    global _offset
    # Re-read the wall clock each drain so a stepped system clock is followed.
    _offset = off = _wall_offset_ns()
    n = len(_buffer) if limit is None else min(limit, len(_buffer))
    pop = _buffer.popleft
    out: list[Span] = []
    for _ in range(n):
        try:
            s = pop()
        except IndexError:  # another drain took it
            break
        out.append(s.to_event(off))
    return out


def clear() -> None:
    """Discard buffered spans and the dropped count (tests)."""
    global _dropped
    _buffer.clear()
    _dropped = 0
