"""In-process instruments: counter increment and histogram record, revopipe vs
prometheus_client vs the OpenTelemetry SDK, in one run.

    python benches/bench_instruments.py [--n 2000000]

Targets (DESIGN.md): counter inc <= 0.10 µs, histogram record <= 0.15 µs.
"""

from __future__ import annotations

import argparse
import platform
import timeit

N = 2_000_000


def per_call_us(stmt: str, setup: str, n: int) -> float:
    best = min(timeit.repeat(stmt, setup, number=n, repeat=5))
    return best / n * 1e6


SETUPS = {
    "revopipe": (
        "from revopipe import metrics;"
        "c = metrics.counter('requests', tags={'route': '/'});"
        "h = metrics.histogram('latency', 's', {'route': '/'})"
    ),
    "prometheus_client": (
        "import prometheus_client as p;"
        "r = p.CollectorRegistry();"
        "c = p.Counter('requests', 'r', ['route'], registry=r).labels('/');"
        "h = p.Histogram('latency', 'l', ['route'], registry=r).labels('/')"
    ),
    "opentelemetry-sdk": (
        "from opentelemetry.sdk.metrics import MeterProvider;"
        "m = MeterProvider().get_meter('bench');"
        "c = m.create_counter('requests'); h = m.create_histogram('latency');"
        "a = {'route': '/'}"
    ),
}
# each library's own hot-path call, with the tag set bound once as its docs recommend
INC = {"revopipe": "c.inc()", "prometheus_client": "c.inc()", "opentelemetry-sdk": "c.add(1, a)"}
RECORD = {
    "revopipe": "h.record(0.0123)",
    "prometheus_client": "h.observe(0.0123)",
    "opentelemetry-sdk": "h.record(0.0123, a)",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=N)
    args = ap.parse_args()
    n = args.n
    rows = []
    for name, setup in SETUPS.items():
        # the OTel SDK is ~20x slower per call: fewer calls keep the run short
        k = n if name != "opentelemetry-sdk" else max(n // 10, 1000)
        rows.append((name, per_call_us(INC[name], setup, k), per_call_us(RECORD[name], setup, k)))
    ours = rows[0]
    print(
        f"machine: {platform.machine()} python {platform.python_version()}, "
        f"best of 5 x {n:,} calls (OTel: {n // 10:,})"
    )
    print(
        "| library | counter inc µs | ratio vs revopipe | histogram record µs | ratio vs revopipe |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, inc, rec in rows:
        print(f"| {name} | {inc:.3f} | {inc / ours[1]:.1f}x | {rec:.3f} | {rec / ours[2]:.1f}x |")


if __name__ == "__main__":
    main()
