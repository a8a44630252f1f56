"""In-process instruments for services, backed by the Rust core.

    from revopipe import metrics

    requests = metrics.counter("app.requests", unit="{request}", tags={"route": "/"})
    requests.inc()
    latency = metrics.histogram("http.server.request.duration", unit="s")
    latency.record(0.012)
    with metrics.timer("db.query.duration", tags={"table": "users"}):
        ...

`counter`, `gauge` and `histogram` return the Rust handle itself, so `inc()`/`record()`
cost one native call and nothing in Python. Keep the handle: looking it up again by name
is much slower than using it. Asking again for the same name and tags returns a handle to
the same instrument. All of them are safe to use from many threads.

An `app` source in a pipeline reads every instrument each interval: counters as
cumulative totals, gauges as their value, histograms as mergeable snapshots.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import ParamSpec, TypeVar

from revopipe import _core
from revopipe.events import make_tags

Counter = _core.Counter
Gauge = _core.Gauge
Histogram = _core.Histogram

P = ParamSpec("P")
R = TypeVar("R")


def counter(name: str, unit: str = "1", tags: Mapping[str, object] | None = None) -> Counter:
    """A monotonic counter: `inc(amount=1)`; reported as a cumulative total."""
    return _core.counter(name, unit, make_tags(tags))


def gauge(name: str, unit: str = "1", tags: Mapping[str, object] | None = None) -> Gauge:
    """A value that goes up and down: `set(v)`, `inc()`, `dec()`."""
    return _core.gauge(name, unit, make_tags(tags))


def histogram(
    name: str,
    unit: str = "s",
    tags: Mapping[str, object] | None = None,
    significant_digits: int = 3,
) -> Histogram:
    """A distribution (HdrHistogram): `record(v)`; percentiles come out of `aggregate`."""
    return _core.histogram(name, unit, make_tags(tags), significant_digits)


class Timer:
    """Records elapsed seconds into a histogram; a context manager and a decorator."""

    __slots__ = ("_hist", "_start")

    def __init__(self, hist: Histogram) -> None:
        self._hist = hist
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._hist.record(time.perf_counter() - self._start)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        hist = self._hist

        @functools.wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            # A fresh start per call: the decorated function may run in many threads.
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                hist.record(time.perf_counter() - start)

        return timed


def timer(name: str, tags: Mapping[str, object] | None = None) -> Timer:
    """Time a block (`with metrics.timer(...)`) or every call (`@metrics.timer(...)`),
    recording seconds into the histogram `name`."""
    return Timer(histogram(name, "s", tags))


def collect() -> list[_core.InstrumentReading]:
    """Every instrument's current reading (what the `app` source emits)."""
    return _core.collect_instruments()
