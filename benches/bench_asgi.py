"""Per-request overhead of the ASGI middleware: the same Starlette app bare, with
revopipe's `RevopipeMiddleware`, and with OpenTelemetry's `OpenTelemetryMiddleware`
(opentelemetry-instrumentation-asgi, with the SDK's TracerProvider + BatchSpanProcessor
and a MeterProvider, exporters that discard; as configured by default, and with its
per-send/receive spans turned off), in one run.

    python benches/bench_asgi.py [--n 2000] [--rounds 40]

The app is driven in-process (`await app(scope, receive, send)` in a loop) so network
and server noise do not hide the difference. Rounds of the variants alternate; each
figure is the median round. Overhead = variant - bare app.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from revopipe import _core, trace
from revopipe.instrument.asgi import RevopipeMiddleware

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class DiscardExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


async def user(request: Request) -> Response:
    return PlainTextResponse(f"user {request.path_params['uid']}")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/users/{uid}", user), Route("/health", user)])


def apps() -> dict[str, Any]:
    bare = starlette_app()
    ours = starlette_app()
    ours.add_middleware(RevopipeMiddleware)
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(DiscardExporter()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    otel = starlette_app()
    otel.add_middleware(OpenTelemetryMiddleware, tracer_provider=tp, meter_provider=mp)
    # By default OpenTelemetry also opens a span per ASGI send/receive; this one does not.
    lean = starlette_app()
    lean.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=tp,
        meter_provider=mp,
        exclude_spans=["receive", "send"],
    )
    return {
        "bare app": bare,
        "revopipe": ours,
        "opentelemetry": otel,
        "opentelemetry, server span only": lean,
    }


def scope(with_parent: bool) -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"user-agent", b"bench/1"), (b"accept", b"*/*")]
    if with_parent:
        headers.append((b"traceparent", TRACEPARENT))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users/42",
        "raw_path": b"/users/42",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


async def per_request_us(app: Any, base: dict[str, Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        # a fresh scope per request, as a server gives: Starlette writes into it
        await app(dict(base), receive, send)
    return (time.perf_counter() - t0) / n * 1e6


async def run(n: int, rounds: int) -> None:
    variants = apps()
    trace.configure(sample_ratio=1.0, max_buffered=n * 4)
    print(f"machine: {platform.machine()} python {platform.python_version()}, asyncio, one thread")
    print(f"{n} requests per round, {rounds} rounds per variant, alternating\n")
    for with_parent in (False, True):
        base = scope(with_parent)
        samples: dict[str, list[float]] = {k: [] for k in variants}
        for app in variants.values():
            await per_request_us(app, base, n // 4)  # warm up
        for _ in range(rounds):
            for name, app in variants.items():
                trace.clear()
                _core.collect_instruments()
                gc.collect()
                samples[name].append(await per_request_us(app, base, n))
        med = {k: statistics.median(v) for k, v in samples.items()}
        bare = med["bare app"]
        ours = med["revopipe"] - bare
        theirs = med["opentelemetry"] - bare
        lean = med["opentelemetry, server span only"] - bare
        title = "with an incoming traceparent" if with_parent else "no incoming traceparent"
        print(f"GET /users/42, {title}")
        print("| variant | µs/request (median) | overhead µs/request |")
        print("| --- | ---: | ---: |")
        for name, v in med.items():
            over = "" if name == "bare app" else f"{v - bare:.1f}"
            print(f"| {name} | {v:.1f} | {over} |")
        print(
            f"overhead ratio opentelemetry / revopipe: {theirs / ours:.1f}x "
            f"(server span only: {lean / ours:.1f}x); "
            f"request rate with revopipe {1e6 / med['revopipe']:,.0f}/s vs bare "
            f"{1e6 / bare:,.0f}/s\n"
        )
    trace.clear()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    asyncio.run(run(args.n, args.rounds))


if __name__ == "__main__":
    main()
