from pathlib import Path

import pytest

from revopipe import Batch, Metric
from revopipe.testing import make
from revopipe_plugins.blackhole.sink import BlackholeSink

pytestmark = pytest.mark.anyio


async def test_accepts_and_discards(tmp_path: Path) -> None:
    sink = make(BlackholeSink, {"inputs": ["x"]}, tmp_path)
    await sink.start()
    assert await sink.write(Batch.of([Metric("a", 1.0)])) is None
    await sink.flush()
    await sink.stop()
