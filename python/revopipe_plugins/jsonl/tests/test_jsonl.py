import json
from pathlib import Path

import pytest

from revopipe import Batch, Metric, MetricKind
from revopipe.testing import make
from revopipe_plugins.jsonl.sink import JsonlSink

pytestmark = pytest.mark.anyio


def batch(start: int, n: int) -> Batch:
    return Batch.of(
        [
            Metric("m", float(i), MetricKind.COUNTER, "1", 1, (("k", "v"),))
            for i in range(start, start + n)
        ]
    )


async def test_appends_relative_to_data_dir_and_rotates(tmp_path: Path) -> None:
    sink = make(
        JsonlSink,
        {"inputs": ["x"], "path": "sub/out.jsonl", "max_size": "2KiB", "max_files": 3},
        tmp_path,
    )
    await sink.start()
    for i in range(0, 200, 10):
        await sink.write(batch(i, 10))
    await sink.stop()
    out = tmp_path / "sub" / "out.jsonl"
    files = [out.with_name(f"out.jsonl.{i}") for i in (3, 2, 1)] + [out]
    assert all(f.exists() for f in files)
    assert not out.with_name("out.jsonl.4").exists()  # max_files honoured
    for f in files:
        assert f.stat().st_size <= 2048
        lines = f.read_text().splitlines()
        assert len(lines) % 10 == 0  # a batch is never split across files
    kept = [json.loads(line)["value"] for f in files for line in f.read_text().splitlines()]
    assert kept == [float(i) for i in range(200 - len(kept), 200)]  # newest kept, in order


async def test_reopen_appends(tmp_path: Path) -> None:
    for start in (0, 5):
        sink = make(
            JsonlSink, {"inputs": ["x"], "path": str(tmp_path / "a.jsonl"), "fsync": True}, tmp_path
        )
        await sink.start()
        await sink.write(batch(start, 5))
        await sink.flush()
        await sink.stop()
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["value"] for r in rows] == [float(i) for i in range(10)]
    assert rows[0] == {
        "type": "metric",
        "name": "m",
        "kind": "counter",
        "value": 0.0,
        "unit": "1",
        "timestamp": 1,
        "tags": {"k": "v"},
    }


def test_bad_size_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size such as"):
        make(JsonlSink, {"inputs": ["x"], "path": "a", "max_size": "big"}, tmp_path)
