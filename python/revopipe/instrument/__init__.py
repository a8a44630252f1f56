"""One-line instrumentation of HTTP servers and clients: `revopipe.instrument.asgi`
(a middleware for Starlette, FastAPI or any ASGI app) and `revopipe.instrument.httpx`
(event hooks and transports for httpx clients). Each traces requests with
`revopipe.trace` and records their durations with `revopipe.metrics`; an `app` source
brings both into a pipeline. See docs/tracing.md."""
