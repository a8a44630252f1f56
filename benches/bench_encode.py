"""Metric batch -> JSON lines: rows per second for a 10 000-row columnar batch.

(a) revopipe: `revopipe._core.encode_jsonl` on the columns (one call; the Rust core copies
    the columns out, releases the GIL and encodes).
(b) the peer, stdlib: a dict per row built from the same columns, `json.dumps` of each,
    joined by newlines and encoded to bytes: what the pipeline would do without the core.
(c) orjson, if importable: the same per-row dicts through `orjson.dumps`.

Every variant starts from the same columns and ends with the same bytes-level content
(checked once with json.loads before timing). Each is timed with time.perf_counter over
--repeat runs; the median is reported. No thresholds: this only prints.

    python benches/bench_encode.py [--rows 10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from array import array
from collections.abc import Callable
from typing import Any

from revopipe import _core

try:
    import orjson
except ImportError:  # optional peer
    orjson = None

LABELS = ("counter", "gauge", "histogram", "set")
NAMES = (
    "system.cpu.usage",
    "system.memory.used",
    "process.cpu.time",
    "disk.io.read_bytes",
    "net.packets.sent",
    "http.request.duration",
)
UNITS = ("%", "By", "s", "By", "1", "ms")

Columns = tuple[list[str], bytes, array, list[str], array, tuple]


def make_columns(rows: int) -> Columns:
    """A batch shaped like one collection pass: repeated metric names over many
    processes/hosts, three tags a row, one timestamp per hundred rows, mixed values."""
    names = [NAMES[i % len(NAMES)] for i in range(rows)]
    kinds = bytes(i % 4 for i in range(rows))
    values = array(
        "d",
        (
            i * 0.1732050807568877 if i % 3 == 0 else float(i * 4096) if i % 3 == 1 else 1 / (i + 3)
            for i in range(rows)
        ),
    )
    units = [UNITS[i % len(UNITS)] for i in range(rows)]
    timestamps = array("q", (1_732_000_000_000_000_000 + i // 100 for i in range(rows)))
    tags = tuple(
        (("host", f"web-{i % 16:02d}"), ("pid", str(1000 + i % 700)), ("service", "checkout"))
        for i in range(rows)
    )
    return names, kinds, values, units, timestamps, tags


def row_dicts(cols: Columns) -> list[dict[str, Any]]:
    names, kinds, values, units, timestamps, tags = cols
    return [
        {
            "type": "metric",
            "name": names[i],
            "kind": LABELS[kinds[i]],
            "value": values[i],
            "unit": units[i],
            "timestamp": timestamps[i],
            "tags": dict(tags[i]),
        }
        for i in range(len(names))
    ]


def revopipe_encode(cols: Columns) -> bytes:
    return _core.encode_jsonl(*cols)


def stdlib_encode(cols: Columns) -> bytes:
    dumps = json.dumps
    return "".join([dumps(d) + "\n" for d in row_dicts(cols)]).encode()


def orjson_encode(cols: Columns) -> bytes:
    assert orjson is not None
    dumps = orjson.dumps
    return b"".join([dumps(d) + b"\n" for d in row_dicts(cols)])


def check_same(cols: Columns, variants: dict[str, Callable[[Columns], bytes]]) -> None:
    want = [json.loads(line) for line in stdlib_encode(cols).splitlines()]
    for name, encode in variants.items():
        got = [json.loads(line) for line in encode(cols).splitlines()]
        if got != want:
            raise SystemExit(f"{name} does not produce the same objects as json.dumps")


def median_seconds(fn: Callable[[Columns], bytes], cols: Columns, repeat: int) -> float:
    fn(cols)  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(cols)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    cols = make_columns(args.rows)
    variants: dict[str, Callable[[Columns], bytes]] = {
        "revopipe (_core.encode_jsonl)": revopipe_encode,
        "peer: stdlib json.dumps per row": stdlib_encode,
    }
    if orjson is not None:
        variants[f"orjson {orjson.__version__}.dumps per row"] = orjson_encode
    check_same(cols, variants)

    print(
        f"# encode {args.rows} metric rows -> JSON lines; median of {args.repeat} runs; "
        f"Python {platform.python_version()}, revopipe._core {_core.__version__}"
    )
    print(f"# output size: {len(revopipe_encode(cols))} bytes")
    print("| variant | median ms | rows/s |")
    print("| --- | ---: | ---: |")
    rates = {}
    for name, fn in variants.items():
        seconds = median_seconds(fn, cols, args.repeat)
        rates[name] = args.rows / seconds
        print(f"| {name} | {seconds * 1e3:.2f} | {rates[name]:,.0f} |")

    ours = rates["revopipe (_core.encode_jsonl)"]
    print()
    print(f"ratio revopipe / stdlib peer: {ours / rates['peer: stdlib json.dumps per row']:.1f}x")
    for name, rate in rates.items():
        if name.startswith("orjson"):
            print(f"ratio revopipe / orjson: {ours / rate:.1f}x")


if __name__ == "__main__":
    main()
