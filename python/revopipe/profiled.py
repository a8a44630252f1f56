"""`@revopipe.profiled`: every call's wall time into a histogram, per function.

    import revopipe

    @revopipe.profiled
    def render(page): ...

    @revopipe.profiled(name="checkout", tags={"tier": "gold"})
    async def pay(order): ...

Each call records its duration in seconds into the histogram `code.function.duration`
(OpenTelemetry semantic-convention tag names: `code.function` = the function's qualname,
`code.namespace` = its module). An `app` source in the pipeline reads it like any other
instrument, so percentiles, alerts and the dashboard work on it unchanged.

This complements the statistical profiler plugin: the sampler says where CPU goes across
the whole process, the decorator gives exact call counts and latency distributions for the
few functions you care about.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast, overload

from revopipe import metrics

METRIC = "code.function.duration"

P = ParamSpec("P")
R = TypeVar("R")


def _wrap(
    fn: Callable[P, R], name: str | None, tags: Mapping[str, object] | None, metric: str
) -> Callable[P, R]:
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        # calling a generator function only creates the generator: the time would be ~0
        raise TypeError(
            f"revopipe.profiled: {getattr(fn, '__qualname__', fn)!r} is a generator function; "
            "calling it does no work, so its time would mean nothing. Decorate the function "
            "that consumes it, or time the loop with revopipe.metrics.timer(...)"
        )
    qualname = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
    module = getattr(fn, "__module__", None) or "?"
    all_tags: dict[str, object] = {"code.function": qualname, "code.namespace": module}
    all_tags.update(tags or {})
    # looked up once here: the hot path is one perf_counter pair and one native record()
    record = metrics.histogram(metric, "s", all_tags).record
    perf = time.perf_counter

    if inspect.iscoroutinefunction(fn):
        coro_fn = cast(Callable[..., Awaitable[Any]], fn)

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            # awaited time: what the caller waits for, including time suspended in I/O
            start = perf()
            try:
                return await coro_fn(*args, **kwargs)
            finally:
                record(perf() - start)

        return cast(Callable[P, R], timed_async)

    @functools.wraps(fn)
    def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        start = perf()
        try:
            return fn(*args, **kwargs)
        finally:
            record(perf() - start)

    return timed


@overload
def profiled(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def profiled(
    *,
    name: str | None = None,
    tags: Mapping[str, object] | None = None,
    metric: str = METRIC,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def profiled(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    tags: Mapping[str, object] | None = None,
    metric: str = METRIC,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record each call's wall time (seconds) into the histogram `metric`
    (default `code.function.duration`), tagged `code.function` (the qualname, or `name`),
    `code.namespace` (the module) and any `tags`.

    Use bare (`@profiled`) or with arguments (`@profiled(name="checkout", tags={...})`).
    A coroutine function is timed until its awaited result, so time suspended in I/O
    counts. A call that raises is timed too and lands in the same series (no error tag:
    one series per function keeps cardinality fixed; count errors separately if needed).
    Generator functions are refused (TypeError): calling one does no work.

    The histogram handle is created once at decoration time; each call costs one
    `perf_counter` pair and one native `record()`. Safe from many threads.
    """
    if fn is not None:
        return _wrap(fn, name, tags, metric)

    def decorate(f: Callable[P, R]) -> Callable[P, R]:
        return _wrap(f, name, tags, metric)

    return decorate
