import json
import time
from pathlib import Path

import pytest

from revopipe import Batch, Health, HealthStatus, Metric, MetricKind
from revopipe.testing import make
from revopipe_plugins.console.format import text_lines
from revopipe_plugins.console.sink import ConsoleSink

pytestmark = pytest.mark.anyio

TS = int(time.mktime((2026, 11, 29, 3, 4, 5, 0, 0, -1))) * 1_000_000_000 + 250_000_000
BATCH = Batch.of(
    [
        Metric("system.cpu.utilization", 0.25, MetricKind.GAUGE, "1", TS, (("cpu", "0"),)),
        Metric("system.network.io", 1024.0, MetricKind.COUNTER, "By", TS, ()),
        Health("component:x", HealthStatus.DEGRADED, "slow", TS),
    ]
)


def test_text_format() -> None:
    assert list(text_lines(BATCH)) == [
        '03:04:05.250 system.cpu.utilization{cpu="0"} 0.25 gauge',
        "03:04:05.250 system.network.io 1024 By counter",
        f"health: subject=component:x status=degraded reason=slow timestamp={TS}",
    ]


async def test_json_format_writes_jsonl(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    sink = make(ConsoleSink, {"inputs": ["x"], "format": "json"}, tmp_path)
    await sink.start()
    await sink.write(BATCH)
    await sink.stop()
    lines = capfdbinary.readouterr().out.decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows == [e for e in BATCH.iter_dicts()]
