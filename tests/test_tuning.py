"""Live tuning: a sink's `batch_max` merges batches already queued into one write, losing
and reordering nothing; a retune reaches the running instance; a source re-reads its
tunable interval."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from revopipe import Batch
from tests.helpers import pipeline, values

pytestmark = pytest.mark.anyio

BATCH = 10


def config(tmp_path: Path, batch_max: int) -> dict[str, object]:
    return {
        "pipeline": {"data_dir": str(tmp_path)},
        "sources": {
            "gen": {"type": "generate", "batch_size": BATCH, "count": 2000, "interval": "0s"}
        },
        "sinks": {
            "slow": {
                "type": "collect",
                "inputs": ["gen"],
                "delay": 0.005,
                "buffer": 16,
                "batch_max": batch_max,
            }
        },
    }


async def test_batch_max_merges_queued_batches_without_loss_or_reordering(
    tmp_path: Path,
) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(config(tmp_path, batch_max=8), collected)
    await p.run()
    writes = collected["slow"]
    assert values(writes) == [float(i) for i in range(2000)]
    # the source outruns a 5 ms write: most writes carry several batches, none more than 8
    assert len(writes) < 2000 // BATCH / 2
    assert max(len(b) for b in writes) <= 8 * BATCH
    s = {x["name"]: x for x in p.snapshot()}
    assert s["slow"]["batches_in"] == 2000 // BATCH and s["slow"]["events_in"] == 2000


async def test_batch_max_one_writes_each_batch_alone(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(config(tmp_path, batch_max=1), collected)
    await p.run()
    assert [len(b) for b in collected["slow"]] == [BATCH] * (2000 // BATCH)


async def test_retune_reaches_the_running_sink(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    cfg = config(tmp_path, batch_max=1)
    cfg["sources"] = {"gen": {"type": "generate", "batch_size": BATCH, "interval": "1ms"}}
    p = pipeline(cfg, collected)
    async with p.running():
        await anyio.sleep(0.3)
        assert p.retune("slow", {"batch_max": 16}) == {"batch_max": 1}
        instance = p.component("slow")
        assert instance is not None and instance.config.batch_max == 16  # type: ignore[attr-defined]
        seen = len(collected["slow"])
        await anyio.sleep(0.5)
    assert max(len(b) for b in collected["slow"][seen:]) > BATCH
