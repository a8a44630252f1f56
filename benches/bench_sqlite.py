"""The `sqlite` history sink's write throughput and footprint, side by side with what a
hand-rolled history does: sqlite3 `executemany` into one table with the name and JSON tags
on every row (with and without an index for per-series range queries).

    python benches/bench_sqlite.py [--batches 200] [--batch-size 1000] [--series 500]

Both sides get the same metric batches (gauges and cumulative counters, `--series` series
of 3 tags each, every series sampled once per second), one transaction per batch, WAL
with synchronous=NORMAL. The sink goes through `write()` (a worker thread per batch) and
also keeps the 1m and 1h rollups; the peer stores raw rows only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import tempfile
import time
from array import array
from pathlib import Path

import anyio

from revopipe.batch import Batch, MetricBatch
from revopipe.events import MetricKind, make_tags
from revopipe.testing import make
from revopipe_plugins.sqlite.sink import SqliteSink

S = 1_000_000_000
T0 = 1_800_000_000 * S


def batches(n_batches: int, size: int, n_series: int) -> list[Batch]:
    """`n_batches` batches of `size` rows cycling through the series, one sample of
    each series per second."""
    names = [f"app.metric_{i % 25}" for i in range(n_series)]
    kinds = [MetricKind.COUNTER if i % 3 == 0 else MetricKind.GAUGE for i in range(n_series)]
    tags = [
        make_tags({"host": f"web-{i // 25}", "region": f"r{i % 4}", "service": "checkout"})
        for i in range(n_series)
    ]
    out = []
    row = 0
    for _ in range(n_batches):
        idx = [(row + j) % n_series for j in range(size)]
        ticks = [(row + j) // n_series for j in range(size)]
        out.append(
            Batch(
                MetricBatch(
                    [names[i] for i in idx],
                    bytes(kinds[i] for i in idx),
                    array("d", (float(t * 10 + i) for i, t in zip(idx, ticks, strict=True))),
                    ["1"] * size,
                    array("q", (T0 + t * S for t in ticks)),
                    [tags[i] for i in idx],
                )
            )
        )
        row += size
    return out


def db_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def revopipe_run(data: list[Batch], workdir: Path) -> tuple[float, int]:
    sink = make(SqliteSink, {"inputs": ["x"], "max_size": "64GiB"}, workdir, name="history")
    await sink.start()
    t0 = time.perf_counter()
    for b in data:
        await sink.write(b)
    elapsed = time.perf_counter() - t0
    await sink.flush()
    await sink.stop()
    return elapsed, db_bytes(workdir / "history.db")


def naive_run(data: list[Batch], workdir: Path, index: bool) -> tuple[float, int]:
    path = workdir / "naive.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE metrics (name TEXT, tags TEXT, kind TEXT, unit TEXT, ts INTEGER, value REAL)"
    )
    if index:
        conn.execute("CREATE INDEX metrics_by_series ON metrics (name, tags, ts)")
    labels = {k: MetricKind(k).label for k in range(4)}
    t0 = time.perf_counter()
    for b in data:
        m = b.metrics
        rows = [
            (name, json.dumps(dict(tags), sort_keys=True), labels[kind], unit, ts, value)
            for name, kind, value, unit, ts, tags in zip(
                m.names, m.kinds, m.values, m.units, m.timestamps, m.tags, strict=True
            )
        ]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed, db_bytes(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = batches(args.batches, args.batch_size, args.series)
    rows = args.batches * args.batch_size
    ours: list[tuple[float, int]] = []
    peer: list[tuple[float, int]] = []
    peer_noidx: list[tuple[float, int]] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            ours.append(anyio.run(revopipe_run, data, Path(d)))
        with tempfile.TemporaryDirectory() as d:
            peer.append(naive_run(data, Path(d), index=True))
        with tempfile.TemporaryDirectory() as d:
            peer_noidx.append(naive_run(data, Path(d), index=False))

    def rate(runs: list[tuple[float, int]]) -> float:
        return rows / statistics.median(t for t, _ in runs)

    def per_point(runs: list[tuple[float, int]]) -> float:
        return runs[-1][1] / rows

    print(
        f"machine: {platform.machine()} python {platform.python_version()}, "
        f"sqlite {sqlite3.sqlite_version}; {rows:,} rows in batches of {args.batch_size}, "
        f"{args.series} series, median of {args.repeat}"
    )
    print("| writer | rows/s | DB bytes per point |")
    print("| --- | ---: | ---: |")
    print(
        f"| revopipe `sqlite` sink (raw + 1m/1h rollups) | {rate(ours):,.0f} "
        f"| {per_point(ours):.1f} |"
    )
    print(
        f"| naive executemany, JSON tags, index (name, tags, ts) | {rate(peer):,.0f} "
        f"| {per_point(peer):.1f} |"
    )
    print(
        f"| naive executemany, JSON tags, no index | {rate(peer_noidx):,.0f} "
        f"| {per_point(peer_noidx):.1f} |"
    )
    print(
        f"\nratio revopipe / naive (indexed): {rate(ours) / rate(peer):.2f}x rows/s, "
        f"{per_point(peer) / per_point(ours):.1f}x fewer bytes per point"
    )
    print(
        f"ratio revopipe / naive (no index): {rate(ours) / rate(peer_noidx):.2f}x rows/s, "
        f"{per_point(peer_noidx) / per_point(ours):.1f}x fewer bytes per point"
    )


if __name__ == "__main__":
    main()
