"""Helpers shared by the nats plugin tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import MetricKind
from revopipe.wire.batch import encode_batch
from revopipe_plugins.nats.source import NatsSource
from revopipe_plugins.nats.tests.server import client


def numbered(start: int, n: int, origin: str | None = None) -> Batch:
    b = MetricBatchBuilder()
    for i in range(start, start + n):
        b.add("t.seq", float(i), MetricKind.GAUGE, "1", ())
    return Batch(b.build(), origin=origin)


def values(batches: list[Batch]) -> list[int]:
    return [int(v) for b in batches for v in b.metrics.values]


async def publish(url: str, subject: str, payloads: list[tuple[str, bytes]]) -> None:
    """Publishes raw payloads with the given message ids, straight to JetStream."""
    async with client(url) as nc:
        js = nc.jetstream()
        for msg_id, data in payloads:
            await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})


async def publish_numbered(url: str, subject: str, n: int, prefix: str = "m") -> None:
    await publish(url, subject, [(f"{prefix}{i}", encode_batch(numbered(i, 1))) for i in range(n)])


async def wait_for(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if not isinstance(r, bool):
            r = await r
        if r:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await anyio.sleep(0.05)


class Collector:
    """An `emit` that keeps every batch; with `auto_ok` it accepts each at once."""

    def __init__(self, auto_ok: bool = False) -> None:
        self.batches: list[Batch] = []
        self.auto_ok = auto_ok

    async def emit(self, batch: Batch) -> None:
        self.batches.append(batch)
        if self.auto_ok:
            for a in batch.acks:
                a.release(True)


@asynccontextmanager
async def running(
    source: NatsSource, emit: Callable[[Batch], Awaitable[None]]
) -> AsyncIterator[Any]:
    """A started source running in the background; cancelled then stopped at exit, as the
    runtime does in a drain."""
    await source.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(source.run, emit)
            yield source
            tg.cancel_scope.cancel()
    finally:
        await source.stop()


async def stream_ready(url: str, stream: str = "REVOPIPE", durable: str = "revopipe") -> None:
    """Waits until a starting source has made the stream and its consumer."""
    from revopipe_plugins.nats.tests.server import consumer_info

    async def ready() -> bool:
        try:
            await consumer_info(url, stream, durable)
        except Exception:
            return False
        return True

    await wait_for(ready)
