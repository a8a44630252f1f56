"""Profiler overhead on a pure-Python CPU-bound workload: the same workload run plain, under
revopipe's statistical sampler at 100 Hz, under pyinstrument (its default 1 ms interval and
10 ms, which matches 100 Hz) and under cProfile, in the same run, rounds interleaved.

    python benches/bench_profiler.py [--scale 1.0] [--repeat 3]

Each figure is the best of `--repeat` runs (the least disturbed by other load on the machine).
Slowdown = time under the profiler / plain time, both as process CPU time (all threads, so the
sampler thread's own work counts; steady on a busy machine) and as wall time (what the
application feels, but noisy when other jobs share the cores). Needs `pip install pyinstrument`.
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import time
from collections.abc import Callable

from pyinstrument import Profiler as PyinstrumentProfiler

from revopipe_plugins.profiler.sampler import Profile, Sampler


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def word_counts(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        for word in line.split():
            w = word.strip(".,").lower()
            counts[w] = counts.get(w, 0) + 1
    return counts


def checksum(data: bytes) -> int:
    h = 0
    for b in data:
        h = (h * 31 + b) & 0xFFFFFFFF
    return h


TEXT = ["The quick brown fox jumps over the lazy dog, again and again." for _ in range(2000)]
DATA = bytes(range(256)) * 400


def workload(scale: float) -> int:
    # many small calls (fib: what tracing profilers pay most for) mixed with long loops
    total = 0
    for _ in range(max(1, round(100 * scale))):
        total += fib(22)
        total += len(word_counts(TEXT))
        total += checksum(DATA)
    return total


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run_plain(scale: float) -> tuple[float, float]:
    return timed(lambda: workload(scale))


def run_revopipe(scale: float, last: list[Profile]) -> tuple[float, float]:
    sampler = Sampler(rate_hz=100)
    sampler.start()
    try:
        elapsed = timed(lambda: workload(scale))
    finally:
        last[:] = [sampler.window()]
        sampler.stop()
    return elapsed


def run_pyinstrument(scale: float, interval: float) -> tuple[float, float]:
    profiler = PyinstrumentProfiler(interval=interval)
    profiler.start()
    try:
        return timed(lambda: workload(scale))
    finally:
        profiler.stop()


def run_cprofile(scale: float) -> tuple[float, float]:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return timed(lambda: workload(scale))
    finally:
        profiler.disable()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="workload size (1.0: ~3-5 s)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    last: list[Profile] = []
    modes: dict[str, Callable[[], tuple[float, float]]] = {
        "plain": lambda: run_plain(args.scale),
        "revopipe sampler 100 Hz": lambda: run_revopipe(args.scale, last),
        "pyinstrument 1 ms (default)": lambda: run_pyinstrument(args.scale, 0.001),
        "pyinstrument 10 ms (100 Hz)": lambda: run_pyinstrument(args.scale, 0.01),
        "cProfile": lambda: run_cprofile(args.scale),
    }
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    ours_overhead = 0.0
    order = list(modes.items())
    for round_no in range(args.repeat):
        # rotate the order each round so drift on a busy machine does not favour one mode
        k = round_no % len(order)
        for name, run in order[k:] + order[:k]:
            w, c = run()
            wall[name] = min(wall.get(name, w), w)
            cpu[name] = min(cpu.get(name, c), c)
            if name.startswith("revopipe") and last:
                ours_overhead = max(ours_overhead, last[0].overhead)
    print(
        f"machine: {platform.machine()} python {platform.python_version()}, "
        f"best of {args.repeat}, scale {args.scale}"
    )
    print("| run | CPU s | CPU slowdown | wall s | wall slowdown |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in modes:
        print(
            f"| {name} | {cpu[name]:.3f} | {cpu[name] / cpu['plain']:.3f}x "
            f"| {wall[name]:.3f} | {wall[name] / wall['plain']:.3f}x |"
        )
    ours_name = "revopipe sampler 100 Hz"
    ours = cpu[ours_name] / cpu["plain"] - 1
    print()
    print(
        f"revopipe CPU overhead: {ours * 100:+.1f} % "
        f"(sampler thread's own measured CPU / wall: {ours_overhead * 100:.2f} %)"
    )
    for peer in ("pyinstrument 1 ms (default)", "pyinstrument 10 ms (100 Hz)", "cProfile"):
        ratio = cpu[peer] / cpu[ours_name]
        extra = cpu[peer] / cpu["plain"] - 1
        # a negative or tiny revopipe figure is run-to-run noise: no overhead ratio then
        overheads = f"{extra / ours:.0f}x" if ours >= 0.005 else "n/a (revopipe within noise)"
        print(f"{peer} vs revopipe (CPU): time ratio {ratio:.2f}x, overhead ratio {overheads}")
    if last:
        p = last[0]
        top = ", ".join(f"{f.function} {f.self_share:.0%}" for f in p.functions[:3])
        print(f"revopipe last window: {p.total_samples} samples, top self: {top}")


if __name__ == "__main__":
    main()
