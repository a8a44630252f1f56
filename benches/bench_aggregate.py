"""Percentile aggregation through the Python batch API, side by side with the
`hdrhistogram` Python package recording the same values; and memory per active histogram
series at 3 significant digits.

    python benches/bench_aggregate.py [--values 5000000] [--repeat 5] [--series 20000]

Target (DESIGN.md): >= 50 M values/s per core (the `hdrhistogram` package: ~1.3 M/s).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time
from array import array

import psutil
from hdrh.histogram import HdrHistogram

from revopipe import _core

S = 1_000_000_000
T0 = 1_800_000_000 * S


def latencies(n: int) -> array[float]:
    rng = random.Random(7)
    # log-normal around 20 ms with a long tail: what request latencies look like
    return array("d", (rng.lognormvariate(-4.0, 0.8) for _ in range(n)))


def revopipe_values_per_s(values: array[float], repeat: int) -> tuple[float, float]:
    times = []
    p99 = 0.0
    for _ in range(repeat):
        agg = _core.Aggregator(window_ns=10 * S, percentiles=[99.0])
        t0 = time.perf_counter()
        agg.ingest_values("http.server.request.duration", "s", (("route", "/"),), values, T0)
        times.append(time.perf_counter() - t0)
        (result,) = agg.flush(T0 + 20 * S, True)
        p99 = result["percentiles"][0][1]
    return len(values) / statistics.median(times), p99


def hdrh_values_per_s(values: array[float], repeat: int) -> tuple[float, float]:
    # the same recording as revopipe: integer microseconds, 3 significant digits
    ints = [round(v * 1e6) for v in values]
    times = []
    p99 = 0.0
    for _ in range(repeat):
        h = HdrHistogram(1, 3_600_000_000, 3)
        record = h.record_value
        t0 = time.perf_counter()
        for v in ints:
            record(v)
        times.append(time.perf_counter() - t0)
        p99 = h.get_value_at_percentile(99.0) / 1e6
    return len(ints) / statistics.median(times), p99


def bytes_per_series(series: int) -> float:
    """RSS growth per active histogram series (one window, a spread of values each)."""
    values = latencies(64)
    gc.collect()
    proc = psutil.Process()
    agg = _core.Aggregator(window_ns=10 * S, max_series_per_metric=series + 1)
    before = proc.memory_info().rss
    for i in range(series):
        agg.ingest_values("lat", "s", (("id", str(i)),), values, T0)
    after = proc.memory_info().rss
    assert agg.series_count >= series
    return (after - before) / series


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--values", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--series", type=int, default=20_000)
    args = ap.parse_args()
    values = latencies(args.values)
    ours, our_p99 = revopipe_values_per_s(values, args.repeat)
    # the Python package is ~50x slower: a smaller sample keeps the run short
    n_peer = min(len(values), 500_000)
    peer, peer_p99 = hdrh_values_per_s(values[:n_peer], max(1, args.repeat // 2))
    print(f"machine: {platform.machine()} python {platform.python_version()}, one thread")
    print("| recorder | values | values/s | p99 (s) |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| revopipe `Aggregator.ingest_values` | {len(values):,} | {ours:,.0f} | {our_p99:.6f} |"
    )
    print(f"| `hdrhistogram` (Python) `record_value` | {n_peer:,} | {peer:,.0f} | {peer_p99:.6f} |")
    print(f"\nratio revopipe / hdrhistogram: {ours / peer:.1f}x")
    print(
        f"memory: {bytes_per_series(args.series):,.0f} bytes per active histogram series "
        f"(3 significant digits, {args.series:,} series, RSS growth)"
    )


if __name__ == "__main__":
    main()
