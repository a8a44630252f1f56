"""Real pipelines over a real nats-server: agent (`generate -> nats`) and aggregator
(`nats -> sink`). Acks follow the runtime: a message is acked once a sink wrote it (or
dead-lettered it) and nak'ed when a batch is dropped; the sink rides out a server
restart without losing or duplicating a batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from revopipe import Pipeline
from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe.config import SinkConfig
from revopipe.plugins import Registry, build_registry, hookimpl
from revopipe.testing import make
from revopipe_plugins.nats.sink import NatsSink
from revopipe_plugins.nats.source import NatsSource
from revopipe_plugins.nats.tests.server import NatsServer, consumer_info, stream_messages
from revopipe_plugins.nats.tests.util import (
    Collector,
    publish_numbered,
    running,
    stream_ready,
    values,
    wait_for,
)

pytestmark = pytest.mark.anyio

SUBJECT = "revopipe.data.a1"


class GateConfig(SinkConfig):
    fail: bool = False


class GateSink(Sink[GateConfig]):
    """Writes into extras["written"] once extras["gate"] is open; with fail, always raises."""

    type_name = "gate"
    Config: ClassVar[type[GateConfig]] = GateConfig  # type: ignore[misc]

    async def write(self, batch: Batch) -> None:
        if self.config.fail:
            raise ConnectionError("gate sink is down")
        await self.context.extras["gate"].wait()
        self.context.extras["written"].append(batch)


class _Plugin:
    @hookimpl
    def revopipe_component_types(self) -> list[type]:
        return [GateSink]


def registry() -> Registry:
    return build_registry([("nats-tests", _Plugin())])


def agent(server: NatsServer, tmp_path: Path, count: int, **gen: Any) -> Pipeline:
    return Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path / "agent")},
            "sources": {
                "gen": {
                    "type": "generate",
                    "count": count,
                    "batch_size": 10,
                    "interval": "0s",
                    **gen,
                }
            },
            "sinks": {
                "bus": {
                    "type": "nats",
                    "inputs": ["gen"],
                    "url": server.url,
                    "subject": SUBJECT,
                    "retry_max": "200ms",
                    "timeout": "1s",
                }
            },
        }
    )


def aggregator(
    server: NatsServer, tmp_path: Path, sink: dict[str, Any], extras: dict[str, Any] | None = None
) -> Pipeline:
    return Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path / "agg"), "restart_backoff": "10ms"},
            "sources": {
                "bus": {
                    "type": "nats",
                    "url": server.url,
                    "ack_wait": "2s",
                    "ack_timeout": "2s",
                    "fetch_batch": 4,
                }
            },
            "sinks": {"out": {"inputs": ["bus"], **sink}},
        },
        registry=registry(),
        extras=extras,
    )


async def ack_pending(server: NatsServer) -> int:
    return (await consumer_info(server.url, "REVOPIPE", "revopipe")).num_ack_pending


async def is_acked(server: NatsServer, n: int = 0) -> bool:
    return await ack_pending(server) == n


async def test_round_trip(nats_server: NatsServer, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        await agent(nats_server, tmp_path, 200).run()
    assert await stream_messages(nats_server.url, "REVOPIPE") == 20
    p = aggregator(nats_server, tmp_path, {"type": "jsonl", "path": "out.jsonl"})
    out = tmp_path / "agg" / "out.jsonl"

    def rows() -> list[dict[str, Any]]:
        return [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []

    async with p.running():
        # The file is flushed at the drain; the sink's intake says when all arrived.
        await wait_for(lambda: p.stats["out"].events_in >= 200)
        await wait_for(lambda: is_acked(nats_server))
    got = sorted(int(r["value"]) for r in rows())
    assert got == list(range(200)), "every value exactly once"
    info = await consumer_info(nats_server.url, "REVOPIPE", "revopipe")
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_acked_only_after_the_sink_wrote(nats_server: NatsServer, tmp_path: Path) -> None:
    gate, written = anyio.Event(), []
    p = aggregator(nats_server, tmp_path, {"type": "gate"}, {"gate": gate, "written": written})
    async with p.running():
        await stream_ready(nats_server.url)
        await publish_numbered(nats_server.url, SUBJECT, 3)
        await wait_for(lambda: p.stats["bus"].events_out == 3)
        await anyio.sleep(0.3)
        assert await ack_pending(nats_server) == 3 and written == []
        gate.set()
        await wait_for(lambda: is_acked(nats_server))
    assert sorted(values(written)) == [0, 1, 2]


async def test_dead_lettered_counts_as_accepted(nats_server: NatsServer, tmp_path: Path) -> None:
    p = aggregator(nats_server, tmp_path, {"type": "gate", "fail": True, "max_retries": 0})
    async with p.running():
        await stream_ready(nats_server.url)
        await publish_numbered(nats_server.url, SUBJECT, 2)
        await wait_for(lambda: p.stats["out"].dead_lettered == 2)
        await wait_for(lambda: is_acked(nats_server))
    info = await consumer_info(nats_server.url, "REVOPIPE", "revopipe")
    assert info.num_redelivered == 0
    assert (tmp_path / "agg" / "dead_letter" / "out.jsonl").exists()


async def test_dropped_batch_is_redelivered(nats_server: NatsServer, tmp_path: Path) -> None:
    gate, written = anyio.Event(), []
    sink = {"type": "gate", "buffer": 1, "when_full": "drop_newest"}
    p = aggregator(nats_server, tmp_path, sink, {"gate": gate, "written": written})
    async with p.running():
        await stream_ready(nats_server.url)
        await publish_numbered(nats_server.url, SUBJECT, 10)
        await wait_for(lambda: p.stats["out"].dropped > 0)
        gate.set()
        await wait_for(lambda: len(values(written)) >= 10)
        await wait_for(lambda: is_acked(nats_server))
        src = p.component("bus")
        assert isinstance(src, NatsSource)
        assert src.received > 10, "the dropped messages were delivered again"
    assert sorted(values(written)) == list(range(10)), "dropped batches came back, once each"


@pytest.mark.slow
async def test_sink_rides_out_a_server_restart(nats_server: NatsServer, tmp_path: Path) -> None:
    p = agent(nats_server, tmp_path, 120, interval="50ms")
    async with anyio.create_task_group() as tg:
        tg.start_soon(p.run)
        await p.wait_started()

        def published() -> int:
            sink = p.component("bus")
            return sink.published if isinstance(sink, NatsSink) else 0

        await wait_for(lambda: published() >= 2)
        await anyio.to_thread.run_sync(nats_server.stop)
        before = published()
        await anyio.sleep(1.0)
        assert published() == before, "nothing can be stored while the server is down"
        await anyio.to_thread.run_sync(nats_server.start)
        with anyio.fail_after(40):
            while p.running_now:
                await anyio.sleep(0.1)
    assert p.stats["bus"].dead_lettered == 0
    assert p.stats["bus"].retries > 0
    got = Collector(auto_ok=True)
    src = make(NatsSource, {"url": nats_server.url, "fetch_batch": 50}, tmp_path)
    async with running(src, got.emit):
        await wait_for(lambda: len(values(got.batches)) >= 120)
        await anyio.sleep(0.3)
    assert sorted(values(got.batches)) == list(range(120)), "no batch lost or duplicated"
    assert await stream_messages(nats_server.url, "REVOPIPE") == 12
