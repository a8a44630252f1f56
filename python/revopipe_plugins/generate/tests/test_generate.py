from pathlib import Path

import pytest

from revopipe.events import MetricKind
from revopipe.testing import collect, make
from revopipe_plugins.generate.source import GenerateSource

pytestmark = pytest.mark.anyio


async def test_sequence_numbers_every_event_once(tmp_path: Path) -> None:
    src = make(
        GenerateSource,
        {"count": 25, "batch_size": 10, "interval": "0s", "tags": {"env": "t"}},
        tmp_path,
        name="g",
    )
    batches = await collect(src, 5)
    assert [len(b) for b in batches] == [10, 10, 5]
    values = [v for b in batches for v in b.metrics.values]
    assert values == [float(i) for i in range(25)]
    assert set(batches[0].metrics.tags) == {(("env", "t"), ("generator", "g"))}


async def test_constant_mode_reuses_one_batch(tmp_path: Path) -> None:
    src = make(
        GenerateSource,
        {"count": 30, "batch_size": 10, "interval": "0s", "mode": "constant"},
        tmp_path,
    )
    batches = await collect(src, 5)
    assert len(batches) == 3 and batches[0].metrics is batches[1].metrics


async def test_interval_paces_batches(tmp_path: Path) -> None:
    src = make(GenerateSource, {"batch_size": 1, "interval": "100ms"}, tmp_path)
    batches = await collect(src, 0.35)
    assert 3 <= len(batches) <= 5


async def test_histogram_kind_spreads_seconds(tmp_path: Path) -> None:
    src = make(
        GenerateSource,
        {"count": 2500, "batch_size": 1000, "interval": "0s", "kind": "histogram"},
        tmp_path,
    )
    batches = await collect(src, 5)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    values = [v for b in batches for v in b.metrics.values]
    assert values == [(i % 1000 + 1) / 1000 for i in range(2500)]
    m = batches[0].metrics
    assert set(m.kinds) == {MetricKind.HISTOGRAM} and set(m.units) == {"s"}


async def test_counter_is_the_default_kind(tmp_path: Path) -> None:
    src = make(GenerateSource, {"count": 3, "interval": "0s"}, tmp_path)
    (batch,) = await collect(src, 5)
    assert set(batch.metrics.kinds) == {MetricKind.COUNTER} and set(batch.metrics.units) == {"1"}
