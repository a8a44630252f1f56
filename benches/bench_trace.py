"""Span start+end: revopipe.trace vs the OpenTelemetry SDK as a real service runs it
(TracerProvider + BatchSpanProcessor, here with an exporter that discards), in one run.

    python benches/bench_trace.py [--n 2000] [--rounds 200] [--no-gc]

All revopipe rounds run, then all OpenTelemetry rounds (interleaving lets OTel's
allocations and exporter thread slow the round after each of its own); the figure per
library is the median round (and the best). revopipe's finished spans wait in its buffer
until the `app` source drains them: the buffer is emptied between rounds, outside the
timing, and the drain (building the `Span` events, done by the pipeline off the request
path) is timed on its own and shown as the all-in cost.

Target (DESIGN.md): <= 2 µs per span (OpenTelemetry SDK ~11 µs on the reference machine).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from revopipe import trace


class DiscardExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def revopipe_cases() -> dict[str, Callable[[int], None]]:
    span = trace.span

    def root(n: int) -> None:
        for _ in range(n):
            with span("work"):
                pass

    def child(n: int) -> None:
        with span("request"):
            for _ in range(n):
                with span("work"):
                    pass

    def attrs(n: int) -> None:
        for _ in range(n):
            with span("work", {"db.system": "sqlite", "rows": 3}):
                pass

    return {"root span": root, "child span": child, "root + 2 attributes": attrs}


def otel_cases(provider: TracerProvider) -> dict[str, Callable[[int], None]]:
    tracer = provider.get_tracer("bench")
    start = tracer.start_as_current_span

    def root(n: int) -> None:
        for _ in range(n):
            with start("work"):
                pass

    def child(n: int) -> None:
        with start("request"):
            for _ in range(n):
                with start("work"):
                    pass

    def attrs(n: int) -> None:
        for _ in range(n):
            with start("work", attributes={"db.system": "sqlite", "rows": 3}):
                pass

    return {"root span": root, "child span": child, "root + 2 attributes": attrs}


def timed(fn: Callable[[int], None], n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e6


def drain_us(n: int) -> float:
    """Building the Span events of n finished spans (what the app source does)."""
    trace.clear()
    for _ in range(n):
        with trace.span("work", {"db.system": "sqlite", "rows": 3}):
            pass
    t0 = time.perf_counter()
    events = trace.drain()
    dt = time.perf_counter() - t0
    assert len(events) == n
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="spans per round")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument(
        "--no-gc",
        action="store_true",
        help="disable the cyclic GC during timed rounds, as timeit does (both sides)",
    )
    args = ap.parse_args()
    n, rounds = args.n, args.rounds

    trace.configure(sample_ratio=1.0, max_buffered=n * 4)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
    ours, theirs = revopipe_cases(), otel_cases(provider)
    samples: dict[tuple[str, str], list[float]] = {}
    for case in ours:
        ours[case](n)  # warm up
        theirs[case](n)
        # Each side in its own block of rounds, not alternating: interleaved, OTel's
        # allocations and its exporter thread slow the revopipe round after each of its
        # own (measured: +0.8 µs on the median), which would charge OTel's cost to us.
        for side, fn in (("revopipe", ours[case]), ("otel", theirs[case])):
            for _ in range(rounds):
                trace.clear()
                gc.collect()
                if args.no_gc:
                    gc.disable()
                samples.setdefault((side, case), []).append(timed(fn, n))
                gc.enable()
                if side == "otel":
                    provider.force_flush()  # export outside the timing
    drains = [drain_us(n) for _ in range(max(rounds // 10, 5))]
    provider.shutdown()
    trace.clear()

    print(f"machine: {platform.machine()} python {platform.python_version()}, one thread")
    print(f"{n} spans per round, {rounds} rounds each, one side after the other\n")
    print("| span start+end | revopipe µs (median / best) | OpenTelemetry SDK µs | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for case in ours:
        r, o = samples["revopipe", case], samples["otel", case]
        rm, om = statistics.median(r), statistics.median(o)
        print(
            f"| {case} | {rm:.2f} / {min(r):.2f} | {om:.2f} / {min(o):.2f} | "
            f"{om / rm:.1f}x faster |"
        )
    d = statistics.median(drains)
    root = statistics.median(samples["revopipe", "root + 2 attributes"])
    print(
        f"\nrevopipe drain to Span events (app source, off the request path): {d:.2f} µs/span;"
        f" all-in with 2 attributes: {root + d:.2f} µs/span "
        f"(OpenTelemetry SDK: {statistics.median(samples['otel', 'root + 2 attributes']):.2f})"
    )
    print("target: <= 2 µs per span start+end")


if __name__ == "__main__":
    main()
