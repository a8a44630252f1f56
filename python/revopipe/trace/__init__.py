"""Request tracing for services: spans, W3C trace context, sampling.

    from revopipe import trace

    with trace.span("checkout", {"cart.items": 3}) as span:
        span.set_attribute("payment.provider", "stripe")
        ...

    @trace.traced("db.query")          # sync or async functions
    async def load_user(uid: int) -> User: ...

    parent = trace.extract(request.headers)          # W3C traceparent / tracestate in
    with trace.span("GET /users/{id}", kind="server", parent=parent): ...
    trace.inject(outgoing_headers)                    # ... and out

    trace.configure(sample_ratio=0.1, always_on_error=True, max_buffered=10_000)

The current span follows `contextvars`: asyncio tasks inherit it; for a thread or an
executor, wrap the callable with `trace.bind_context(fn)`. Finished spans wait in a
bounded in-process buffer until an `app` source in a pipeline drains them as
`revopipe.events.Span` events (see docs/tracing.md).
"""

from revopipe.trace.propagation import (
    extract,
    extract_asgi,
    format_traceparent,
    inject,
    parse_traceparent,
    valid_tracestate,
)
from revopipe.trace.spans import (
    CURRENT,
    LiveSpan,
    SpanContext,
    SpanKind,
    TraceConfig,
    bind_context,
    buffered_spans,
    clear,
    configure,
    current_span,
    drain,
    dropped_spans,
    get_config,
    span,
    start_span,
    traced,
)

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
    "extract",
    "extract_asgi",
    "format_traceparent",
    "get_config",
    "inject",
    "parse_traceparent",
    "span",
    "start_span",
    "traced",
    "valid_tracestate",
]
