"""What turning on `tracemalloc = true` in the `memory` source costs: the same workloads with
tracing off and on (1 and 10 frames), and how long one snapshot + per-line diff takes (the
work the source does each interval in a worker thread).

    python benches/bench_tracemalloc.py [--n 200000] [--repeat 5]

Workloads: `alloc` builds and drops many small dicts and strings (the worst case: nearly
every bytecode allocates); `json` round-trips a document through `json` (a typical
service's mix of allocation and other work).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from collections.abc import Callable

from revopipe_plugins.memory.tracemalloc_sites import SiteTracker


def alloc_heavy(n: int) -> None:
    rows = [{"id": i, "name": f"item-{i}", "tags": [i, i + 1]} for i in range(n)]
    del rows


def json_roundtrip(n: int) -> None:
    doc = {"items": [{"id": i, "name": f"item-{i}", "price": i * 1.5} for i in range(n // 10)]}
    for _ in range(5):
        doc = json.loads(json.dumps(doc))


def best_of(fn: Callable[[int], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, n={args.n}")
    for name, fn in (("alloc", alloc_heavy), ("json", json_roundtrip)):
        off = best_of(fn, args.n, args.repeat)
        line = [f"{name:6s} off {off * 1e3:7.1f} ms"]
        for frames in (1, 10):
            tracemalloc.start(frames)
            on = best_of(fn, args.n, args.repeat)
            tracemalloc.stop()
            line.append(f"frames={frames}: {on * 1e3:7.1f} ms (x{on / off:.2f})")
        print("  ".join(line))

    # One interval's snapshot + diff with many live traced blocks.
    tracker = SiteTracker(1)
    tracker.start()
    keep = [{"id": i, "name": f"item-{i}"} for i in range(args.n)]
    tracker.baseline()
    keep.extend({"id": i} for i in range(args.n // 10))
    t0 = time.perf_counter()
    sites = tracker.step(10)
    took = time.perf_counter() - t0
    blocks = len(tracemalloc.take_snapshot().traces)
    tracker.stop()
    print(
        f"snapshot + per-line diff with {blocks} live traced blocks: {took * 1e3:.0f} ms "
        f"({len(sites)} sites grew; top: {sites[0].site if sites else '-'})"
    )
    del keep


if __name__ == "__main__":
    main()
