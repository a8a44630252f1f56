"""A slow sink with a small buffer: `block` slows the producer, `drop_newest` drops and
counts; either way the queue, and so memory, stays bounded."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from revopipe import Batch, Metric
from revopipe.runtime.edges import Inbox, Outputs
from revopipe.runtime.stats import ComponentStats
from tests.helpers import pipeline, values

pytestmark = pytest.mark.anyio

BATCH = 100
BUFFER = 2


def config(tmp_path: Path, when_full: str) -> dict[str, object]:
    return {
        "pipeline": {"data_dir": str(tmp_path)},
        "sources": {"gen": {"type": "generate", "batch_size": BATCH, "interval": "0s"}},
        "sinks": {
            "slow": {
                "type": "collect",
                "inputs": ["gen"],
                "delay": 0.02,
                "buffer": BUFFER,
                "when_full": when_full,
            }
        },
    }


async def run_for(p: object, seconds: float, probe: list[tuple[int, int]]) -> None:
    async with p.running():  # type: ignore[attr-defined]
        for _ in range(int(seconds / 0.05)):
            await anyio.sleep(0.05)
            s = {x.name: x for x in p.component_stats()}  # type: ignore[attr-defined]
            probe.append((s["gen"].events_out, s["slow"].events_in + s["slow"].dropped))


async def test_block_slows_the_producer_to_the_sink_rate(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(config(tmp_path, "block"), collected)
    probe: list[tuple[int, int]] = []
    await run_for(p, 1.0, probe)
    # in flight at any moment: the sink's batch, the queue, and the one being sent
    bound = (BUFFER + 2) * BATCH
    assert all(produced - taken <= bound for produced, taken in probe)
    s = {x["name"]: x for x in p.snapshot()}
    # ~50 writes/s at 20 ms each: the free-running generator was held to that pace
    assert s["gen"]["events_out"] <= 60 * BATCH + bound
    assert s["slow"]["dropped"] == 0
    # drain delivered everything the source emitted, in order
    assert values(collected["slow"]) == [float(i) for i in range(s["gen"]["events_out"])]


async def test_drop_newest_drops_and_counts_without_slowing(tmp_path: Path) -> None:
    collected: dict[str, list[Batch]] = {}
    p = pipeline(config(tmp_path, "drop_newest"), collected)
    probe: list[tuple[int, int]] = []
    await run_for(p, 1.0, probe)
    s = {x["name"]: x for x in p.snapshot()}
    delivered = len(values(collected["slow"]))
    assert s["slow"]["dropped"] > 10 * delivered  # the producer ran far ahead
    assert delivered + s["slow"]["dropped"] == s["gen"]["events_out"]
    assert s["slow"]["events_in"] == delivered
    # what was delivered is in order, with gaps where batches were dropped
    got = values(collected["slow"])
    assert got == sorted(got) and len(set(got)) == len(got)


@pytest.mark.parametrize("cancel_first", [True, False])
async def test_a_blocked_emit_cancelled_as_room_appears_is_delivered_iff_counted(cancel_first):
    # The consumer takes a batch and the blocked producer is cancelled in the same loop
    # turn, in either order: the producer's batch must be delivered and counted, or
    # neither (a stream's own send() can deliver and still raise the cancellation).
    inbox = Inbox.create(buffer=1, when_full="block")
    stats = ComponentStats("gen", "source", "generate")
    out = Outputs(stats, [inbox.edge_for(ComponentStats("sink", "sink", "blackhole"))])
    first, second = Batch.of([Metric("a", 1.0)]), Batch.of([Metric("b", 2.0)])
    await out.emit(first)  # fills the inbox
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.emit, second)
            await anyio.wait_all_tasks_blocked()  # the producer waits for room
            if cancel_first:
                scope.cancel()
            assert inbox.receive.receive_nowait() is first
            inbox.space.notify()
            scope.cancel()
    delivered = []
    while True:
        try:
            delivered.append(inbox.receive.receive_nowait())
        except anyio.WouldBlock:
            break
    assert stats.events_out == 1 + sum(len(b) for b in delivered)
