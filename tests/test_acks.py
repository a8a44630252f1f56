"""End-to-end acknowledgements through the runtime: a source learns, per batch, whether
every branch downstream accepted it (written or dead-lettered) or lost it (dropped)."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest
from pydantic import Field

from revopipe import (
    Batch,
    Emit,
    Pipeline,
    Processor,
    ProcessorConfig,
    Sink,
    SinkConfig,
    Source,
    SourceConfig,
    hookimpl,
)
from revopipe.acks import Ack
from revopipe.batch import MetricBatchBuilder
from revopipe.config.load import load_dict
from revopipe.plugins import build_registry

pytestmark = pytest.mark.anyio


class AckSourceConfig(SourceConfig):
    count: int = 5


class AckSource(Source[AckSourceConfig]):
    """Emits `count` one-row batches, each with an Ack recording its verdict."""

    type_name = "acksource"
    Config = AckSourceConfig

    async def run(self, emit: Emit) -> None:
        verdicts: dict[int, bool] = self.context.extras["verdicts"]
        for i in range(self.config.count):
            b = MetricBatchBuilder()
            b.add("x", float(i))
            ack = Ack(lambda ok, i=i: verdicts.__setitem__(i, ok))
            await emit(Batch(b.build(), acks=(ack,)))


class NoConfig(ProcessorConfig):
    pass


class Swallow(Processor[NoConfig]):
    """Consumes everything (a filter that keeps nothing)."""

    type_name = "swallow"
    Config = NoConfig

    async def process(self, batch: Batch) -> None:
        return None


class Split(Processor[NoConfig]):
    """Two output batches per input, new objects without acks of their own."""

    type_name = "split"
    Config = NoConfig

    async def process(self, batch: Batch) -> list[Batch]:
        return [Batch(batch.metrics), Batch(batch.metrics)]


class Hold(Processor[NoConfig]):
    """Keeps everything until the drain, like a window: it owns the acks meanwhile."""

    type_name = "hold"
    Config = NoConfig
    holds_acks = True

    async def start(self) -> None:
        self.held: list[Batch] = []

    async def process(self, batch: Batch) -> None:
        self.context.extras["held_seen"].append(len(batch.acks))
        self.held.append(batch)
        return None

    async def flush(self) -> Batch | None:
        acks = tuple(a for b in self.held for a in b.acks)
        return Batch(type(self.held[0].metrics).concat(b.metrics for b in self.held), acks=acks)


class RecordConfig(SinkConfig):
    fail: bool = False
    delay: float = Field(default=0.0)


class Record(Sink[RecordConfig]):
    type_name = "record"
    Config = RecordConfig

    async def write(self, batch: Batch) -> None:
        if self.config.fail:
            raise ConnectionError("down")
        if self.config.delay:
            await anyio.sleep(self.config.delay)
        self.context.extras["written"].append(batch)
        self.context.extras["by_sink"].append(self.context.name)


class _Plugin:
    @hookimpl
    def revopipe_component_types(self) -> list[type]:
        return [AckSource, Swallow, Split, Hold, Record]


async def run(config: dict[str, Any]) -> dict[str, Any]:
    reg = build_registry([("tests", _Plugin())])
    settings = config.setdefault("pipeline", {})
    settings.update(restart_backoff="1ms", max_restart_backoff="2ms")
    extras: dict[str, Any] = {"verdicts": {}, "held_seen": [], "written": [], "by_sink": []}
    with anyio.fail_after(20):
        await Pipeline(load_dict(config, reg), reg, extras=extras).run()
    gc.collect()
    return extras


def src(count: int = 5) -> dict[str, Any]:
    return {"type": "acksource", "count": count}


async def test_a_written_batch_is_acked_after_the_write(tmp_path: Any) -> None:
    out = await run(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"s": src()},
            "sinks": {"r": {"type": "record", "inputs": ["s"]}},
        }
    )
    assert out["verdicts"] == {i: True for i in range(5)}
    assert len(out["written"]) == 5


async def test_fan_out_waits_for_every_branch_and_a_drop_makes_it_false(tmp_path: Any) -> None:
    out = await run(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"s": src(20)},
            "sinks": {
                "ok": {"type": "record", "inputs": ["s"]},
                # a slow sink with a one-batch inbox that drops: some batches never get there
                "lossy": {
                    "type": "record",
                    "inputs": ["s"],
                    "delay": 0.05,
                    "buffer": 1,
                    "when_full": "drop_newest",
                },
            },
        }
    )
    verdicts = out["verdicts"]
    assert len(verdicts) == 20
    assert True in verdicts.values() and False in verdicts.values()
    # every batch reached the good sink; a False verdict is exactly a batch the lossy
    # branch never got
    assert out["by_sink"].count("ok") == 20
    lost = 20 - out["by_sink"].count("lossy")
    assert list(verdicts.values()).count(False) == lost


async def test_processor_outputs_inherit_and_a_swallowed_batch_is_accepted(
    tmp_path: Any,
) -> None:
    out = await run(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"s": src()},
            "processors": {
                "split": {"type": "split", "inputs": ["s"]},
                "gone": {"type": "swallow", "inputs": ["s"]},
            },
            "sinks": {"r": {"type": "record", "inputs": ["split"], "delay": 0.01}},
        }
    )
    assert out["verdicts"] == {i: True for i in range(5)}
    assert len(out["written"]) == 10
    assert all(len(b.acks) == 1 for b in out["written"])


async def test_a_dead_lettered_batch_is_accepted(tmp_path: Any) -> None:
    out = await run(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"s": src(2)},
            "sinks": {"r": {"type": "record", "inputs": ["s"], "fail": True, "max_retries": 1}},
        }
    )
    assert out["verdicts"] == {0: True, 1: True}
    assert (tmp_path / "dead_letter" / "r.jsonl").exists()


async def test_a_holding_processor_releases_with_its_window(tmp_path: Any) -> None:
    out = await run(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"s": src(3)},
            "processors": {"h": {"type": "hold", "inputs": ["s"]}},
            "sinks": {"r": {"type": "record", "inputs": ["h"]}},
        }
    )
    assert out["held_seen"] == [1, 1, 1]
    assert out["verdicts"] == {0: True, 1: True, 2: True}
    [merged] = out["written"]
    assert len(merged.acks) == 3


async def test_coalesced_writes_release_every_batch(tmp_path: Any) -> None:
    out = await run(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"s": src(30)},
            "sinks": {"r": {"type": "record", "inputs": ["s"], "batch_max": 8, "delay": 0.01}},
        }
    )
    assert out["verdicts"] == {i: True for i in range(30)}


def test_an_ack_forgotten_without_a_verdict_reports_false() -> None:
    verdicts: list[bool] = []
    ack = Ack(verdicts.append)
    ack.retain(2)
    ack.release()
    del ack
    gc.collect()
    assert verdicts == [False]


def test_the_verdict_comes_once_after_the_last_holder() -> None:
    verdicts: list[bool] = []
    ack = Ack(verdicts.append)
    ack.retain(1)
    ack.release(ok=False)
    assert verdicts == [] and ack.pending == 1
    ack.release()
    ack.release()
    assert verdicts == [False] and ack.done
