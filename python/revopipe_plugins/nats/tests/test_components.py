"""The nats sink and source driven directly (no pipeline) against a real nats-server: ids
and dedup, acks only on the pipeline's verdict, nak -> redelivery, in-progress signals,
malformed payloads, a shared durable."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from revopipe.testing import make
from revopipe.wire.batch import encode_batch
from revopipe_plugins.nats.connection import NatsConnectError
from revopipe_plugins.nats.sink import NatsSink
from revopipe_plugins.nats.source import ConsumerError, NatsSource
from revopipe_plugins.nats.stream import StreamError
from revopipe_plugins.nats.tests.server import (
    NatsServer,
    client,
    consumer_info,
    stream_messages,
)
from revopipe_plugins.nats.tests.util import (
    Collector,
    numbered,
    publish,
    publish_numbered,
    running,
    values,
    wait_for,
)

pytestmark = pytest.mark.anyio

SUBJECT = "revopipe.data.t"


def source(server: NatsServer, tmp_path: Path, name: str = "in", **extra: Any) -> NatsSource:
    cfg = {"url": server.url, "ack_wait": "2s", "fetch_batch": 10, "ack_timeout": "200ms"}
    return make(NatsSource, {**cfg, **extra}, tmp_path, name=name)


async def test_sink_ids_and_stream_dedup(nats_server: NatsServer, tmp_path: Path) -> None:
    sink = make(NatsSink, {"url": nats_server.url, "inputs": ["x"], "subject": SUBJECT}, tmp_path)
    await sink.start()
    try:
        b = numbered(0, 5, origin="agent-1/42")
        await sink.write(b)
        await sink.write(b)  # a re-publish with the same id: the stream drops it
        assert sink.duplicates == 1
        assert await stream_messages(nats_server.url, "REVOPIPE") == 1
        plain = numbered(5, 5)
        assert sink.message_id(plain).endswith(f"-{plain.id}")
        await sink.write(plain)
        assert await stream_messages(nats_server.url, "REVOPIPE") == 2
        status = await sink.control("status", {})
        assert status["published"] == 3 and status["connected"]
    finally:
        await sink.stop()

    got = Collector(auto_ok=True)
    async with running(source(nats_server, tmp_path), got.emit):
        await wait_for(lambda: len(got.batches) == 2)
    assert [b.origin for b in got.batches] == ["agent-1/42", sink.message_id(plain)]
    assert values(got.batches) == list(range(10))


async def test_acked_only_on_verdict_nak_redelivers(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    got = Collector()
    src = source(nats_server, tmp_path, ack_wait="1s")
    async with running(src, got.emit):
        await publish_numbered(nats_server.url, SUBJECT, 3)
        await wait_for(lambda: len(got.batches) == 3)
        info = await consumer_info(nats_server.url, "REVOPIPE", "revopipe")
        assert info.num_ack_pending == 3, "emitting must not ack"
        assert await src.control("status", {}) == {
            "leader": None,
            "pending": 3,
            "done": 0,
            "instance": src.instance,
        }

        # Held past ack_wait: the in-progress signals keep the server from redelivering.
        await anyio.sleep(1.6)
        assert len(got.batches) == 3 and src.skipped == 0

        first, second, third = got.batches
        first.acks[0].release(True)

        async def acked(n: int) -> bool:
            info = await consumer_info(nats_server.url, "REVOPIPE", "revopipe")
            return info.num_ack_pending == n

        await wait_for(lambda: acked(2))
        second.acks[0].release(False)  # dropped downstream: nak -> delivered again
        await wait_for(lambda: len(got.batches) == 4)
        assert got.batches[3].origin == second.origin
        assert values(got.batches[3:]) == values([second])
        third.acks[0].release(True)
        got.batches[3].acks[0].release(True)
        await wait_for(lambda: acked(0))
        status = await src.control("status", {})
        assert status["pending"] == 0 and status["done"] == 3


async def test_done_and_pending_ids_are_skipped(nats_server: NatsServer, tmp_path: Path) -> None:
    # A short duplicate window lets the test store a second message with a used id, as a
    # publisher retrying after the window would.
    got = Collector()
    src = source(nats_server, tmp_path, duplicate_window="100ms")
    async with running(src, got.emit):
        await publish(nats_server.url, SUBJECT, [("d1", encode_batch(numbered(1, 1)))])
        await wait_for(lambda: len(got.batches) == 1)
        got.batches[0].acks[0].release(True)
        await wait_for(lambda: _done(src, 1))
        await anyio.sleep(0.3)
        await publish(nats_server.url, SUBJECT, [("d1", encode_batch(numbered(1, 1)))])
        await wait_for(lambda: src.skipped == 1)  # done: acked again, not emitted

        await publish(nats_server.url, SUBJECT, [("p1", encode_batch(numbered(2, 1)))])
        await wait_for(lambda: len(got.batches) == 2)
        await anyio.sleep(0.3)
        await publish(nats_server.url, SUBJECT, [("p1", encode_batch(numbered(2, 1)))])
        await wait_for(lambda: src.skipped == 2)  # pending: not emitted a second time

        async def ack_pending() -> int:
            return (await consumer_info(nats_server.url, "REVOPIPE", "revopipe")).num_ack_pending

        assert await ack_pending() == 2  # both deliveries of p1 wait for the verdict
        got.batches[1].acks[0].release(True)
        await wait_for(lambda: _eq(ack_pending(), 0))
        assert len(got.batches) == 2
    assert await stream_messages(nats_server.url, "REVOPIPE") == 4


async def _done(src: NatsSource, n: int) -> bool:
    return bool((await src.control("status", {}))["done"] == n)


async def _eq(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_malformed_payload_dead_lettered_and_terminated(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    got = Collector(auto_ok=True)
    src = source(nats_server, tmp_path, name="bus", ack_wait="1s")
    async with running(src, got.emit):
        await publish(nats_server.url, SUBJECT, [("bad1", b"\x00not a batch")])
        await publish_numbered(nats_server.url, SUBJECT, 1)
        await wait_for(lambda: len(got.batches) == 1 and src.dead_lettered == 1)
        await anyio.sleep(1.5)  # past ack_wait: a terminated message is not redelivered
        info = await consumer_info(nats_server.url, "REVOPIPE", "revopipe")
        assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert src.dead_lettered == 1 and src.context.stats.errors == 1
    assert values(got.batches) == [0]
    lines = (tmp_path / "dead_letter" / "bus.nats.jsonl").read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert base64.b64decode(rec["payload_b64"]) == b"\x00not a batch"
    assert rec["subject"] == SUBJECT and rec["msg_id"] == "bad1" and rec["stream_seq"] == 1
    assert rec["error"]
    assert any("bus" in r.message and SUBJECT in r.message for r in caplog.records)


async def test_two_instances_share_a_durable(nats_server: NatsServer, tmp_path: Path) -> None:
    a, b = Collector(auto_ok=True), Collector(auto_ok=True)
    async with (
        running(source(nats_server, tmp_path, name="a", fetch_batch=5), a.emit),
        running(source(nats_server, tmp_path, name="b", fetch_batch=5), b.emit),
    ):
        await publish_numbered(nats_server.url, SUBJECT, 100)
        await wait_for(lambda: len(a.batches) + len(b.batches) >= 100)
        await anyio.sleep(0.2)
    va, vb = values(a.batches), values(b.batches)
    assert sorted(va + vb) == list(range(100)), "every message exactly once"
    assert va and vb, "both instances got a share"


async def test_start_errors_name_component_and_key(nats_server: NatsServer, tmp_path: Path) -> None:
    async with client(nats_server.url) as nc:
        await nc.jetstream().add_stream(name="OTHER", subjects=["other.>"])
    sink = make(
        NatsSink,
        {"url": nats_server.url, "inputs": ["x"], "stream": "OTHER", "subject": SUBJECT},
        tmp_path,
        name="bus",
    )
    with pytest.raises(StreamError, match=r"nats sink 'bus'.*`subject`"):
        await sink.start()
    await sink.stop()

    missing = make(
        NatsSource,
        {"url": nats_server.url, "stream": "NOPE", "create_stream": False},
        tmp_path,
        name="in",
    )
    with pytest.raises(StreamError, match=r"nats source 'in'.*create_stream"):
        await missing.start()
    await missing.stop()

    first = source(nats_server, tmp_path)
    await first.start()
    await first.stop()
    other = source(nats_server, tmp_path, subject="revopipe.partials")
    with pytest.raises(ConsumerError, match=r"nats source 'in'.*`subject`"):
        await other.start()
    await other.stop()

    dead = make(NatsSink, {"url": "nats://127.0.0.1:1", "inputs": ["x"]}, tmp_path, name="bus")
    with pytest.raises(NatsConnectError, match=r"nats sink 'bus'.*`url`"):
        await dead.start()
    await dead.stop()
