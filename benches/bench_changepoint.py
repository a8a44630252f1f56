"""E-divisive change-point detection: revopipe's O(n log n) numpy version side by side with
MongoDB's `signal_processing_algorithms` (C-accelerated, O(n^2) distance matrix) on the same
series, with the same permutations and p-value.

    python benches/bench_changepoint.py [--n 10000] [--permutations 100] [--pvalue 0.01]
                                        [--repeat 3] [--peer-repeat 1]

The peer pins numpy < 2 in its metadata but runs on numpy 2; install it without its
dependencies: `pip install --no-deps signal-processing-algorithms structlog more-itertools`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from revopipe_plugins.optimizer.changepoint import detect


def series(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Latency-like gauge around 100 ms with 3 level shifts (two regressions, one fix)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, 5.0, size=n)
    shifts = {n // 4: 8.0, n // 2: 6.0, 3 * n // 4: -10.0}
    for at, delta in shifts.items():
        x[at:] += delta
    return x, sorted(shifts)


def revopipe_run(x: np.ndarray, permutations: int, pvalue: float) -> tuple[float, list[int]]:
    t0 = time.perf_counter()
    found = detect(x, pvalue=pvalue, permutations=permutations, seed=0)
    return time.perf_counter() - t0, [c.index for c in found]


def peer_run(x: np.ndarray, permutations: int, pvalue: float) -> tuple[float, list[int]]:
    from signal_processing_algorithms.energy_statistics import energy_statistics
    from signal_processing_algorithms.energy_statistics.cext_calculator import (
        C_EXTENSION_LOADED,
    )

    assert C_EXTENSION_LOADED, "peer's C extension did not load: the figure would be unfair"
    np.random.seed(0)  # the peer shuffles with the global numpy RNG
    t0 = time.perf_counter()
    found = energy_statistics.e_divisive(x, pvalue=pvalue, permutations=permutations)
    return time.perf_counter() - t0, sorted(found)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--permutations", type=int, default=100)
    ap.add_argument("--pvalue", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    x, truth = series(args.n, args.seed)
    print(
        f"machine: {platform.machine()} python {platform.python_version()} numpy {np.__version__}"
    )
    print(
        f"series: n={args.n}, shifts at {truth}, permutations={args.permutations}, "
        f"pvalue={args.pvalue}"
    )

    ours = [revopipe_run(x, args.permutations, args.pvalue) for _ in range(args.repeat)]
    ours_s = statistics.median(t for t, _ in ours)
    ours_cp = ours[0][1]
    print(f"revopipe detect:                 {ours_s:8.2f} s  change points {ours_cp}")

    try:
        peer = [peer_run(x, args.permutations, args.pvalue) for _ in range(args.peer_repeat)]
    except ImportError:
        print("peer signal_processing_algorithms not installed: see the module docstring")
        return
    peer_s = statistics.median(t for t, _ in peer)
    peer_cp = peer[0][1]
    matrix_mb = args.n * args.n * 8 / 1e6
    print(
        f"signal_processing_algorithms:    {peer_s:8.2f} s  change points {peer_cp}"
        f"  (distance matrix {matrix_mb:.0f} MB)"
    )
    print(f"ratio (peer / revopipe):         {peer_s / ours_s:8.1f}x")
    same = ours_cp == peer_cp
    close = len(ours_cp) == len(peer_cp) and all(
        abs(a - b) <= max(5, args.n // 50) for a, b in zip(ours_cp, peer_cp, strict=True)
    )
    print(f"same change points: {same} (within 2 % of n: {close})")


if __name__ == "__main__":
    main()
