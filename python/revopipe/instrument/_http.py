"""What the ASGI middleware and the httpx hooks share: HTTP semantic-convention values
with bounded cardinality, and duration histograms looked up once per tag set."""

from __future__ import annotations

import logging
from typing import Final

from revopipe import metrics
from revopipe.trace import spans as _spans
from revopipe.trace.spans import LiveSpan

KNOWN_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
OTHER_METHOD: Final = "_OTHER"
"""The semantic conventions' value for a method outside the known set, so a client
sending made-up methods cannot create series."""

OVERFLOW: Final = "_OTHER"
"""The value a bounded tag takes once its limit of distinct values is reached."""

log = logging.getLogger("revopipe.instrument")

_CLASSES: Final = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def status_class(status: int) -> str:
    """ "2xx" for 200..299, ... "5xx"; "other" for anything outside 100..599."""
    return _CLASSES.get(status // 100, "other")


def normalize_method(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


class BoundedValues:
    """Passes values through until `limit` distinct ones have been seen, then maps new
    ones to `OVERFLOW`: a tag taken from request data cannot grow series without bound."""

    __slots__ = ("_limit", "_seen", "overflowed")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the limit of distinct values must be >= 1, got {limit}")
        self._limit = limit
        self._seen: set[str] = set()
        self.overflowed = 0
        """Values mapped to OVERFLOW so far."""

    def __call__(self, value: str) -> str:
        seen = self._seen
        if value in seen:
            return value
        if len(seen) < self._limit:
            seen.add(value)
            return value
        self.overflowed += 1
        return OVERFLOW


class _Discard:
    """Stands in for a histogram that could not be created."""

    def record(self, value: float) -> None:
        return None

    def record_exemplar(self, value: float, trace_id: str, span_id: str) -> None:
        return None


class DurationHistograms:
    """`name`'s histograms (unit "s") by tag set. `metrics.histogram()` validates and
    looks up by name and tags on every call; this keeps the handle per tag-value tuple,
    so a request costs one dict lookup and one native `record`."""

    __slots__ = ("_cache", "_keys", "name")

    def __init__(self, name: str, keys: tuple[str, ...]) -> None:
        self.name = name
        self._keys = keys
        self._cache: dict[tuple[str, ...], metrics.Histogram | _Discard] = {}

    def get(self, values: tuple[str, ...]) -> metrics.Histogram | _Discard:
        h = self._cache.get(values)
        if h is None:
            tags = dict(zip(self._keys, values, strict=True))
            try:
                h = metrics.histogram(self.name, "s", tags)
            except ValueError as exc:
                # The service already has this name as another kind or unit: measuring
                # must never fail its requests. Said once per tag set, then discarded.
                log.warning(
                    "revopipe.instrument: not recording %s %s: %s; rename your own "
                    "instrument or remove it",
                    self.name,
                    tags,
                    exc,
                )
                h = _Discard()
            self._cache[values] = h
        return h

    def record(self, values: tuple[str, ...], seconds: float, span: LiveSpan) -> None:
        """Record one duration; as an exemplar of `span`'s trace when the span is
        exported (sampled, or failed with `always_on_error`), so a slow bucket links to
        a trace that exists."""
        h = self._cache.get(values)
        if h is None:
            h = self.get(values)
        if span._trace[1] or (span.status == "error" and _spans._errors_always):
            # the span's own fields, not its properties: this runs per request
            h.record_exemplar(seconds, f"{span._trace[0]:032x}", f"{span.span_id:016x}")
        else:
            h.record(seconds)
