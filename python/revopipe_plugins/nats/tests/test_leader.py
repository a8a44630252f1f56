"""Leader election: of two sources with the same `leader`, one consumes; when it stops,
the other takes over at once and gets the old leader's unacked messages (redelivered
after ack_wait), all held messages emitted as one batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from revopipe.testing import make
from revopipe_plugins.nats.connection import close
from revopipe_plugins.nats.source import NatsSource
from revopipe_plugins.nats.tests.server import NatsServer
from revopipe_plugins.nats.tests.util import Collector, publish_numbered, values, wait_for

pytestmark = pytest.mark.anyio

SUBJECT = "revopipe.partials"


def elected(server: NatsServer, tmp_path: Path, name: str) -> NatsSource:
    cfg: dict[str, Any] = {
        "url": server.url,
        "subject": SUBJECT,
        "durable": "global",
        "leader": "global",
        "leader_ttl": "1s",
        "ack_wait": "1s",
        "takeover_delay": "2s",
        "ack_timeout": "100ms",
        "instance": name,
    }
    return make(NatsSource, cfg, tmp_path, name=name)


async def test_one_leader_consumes_then_hands_over(nats_server: NatsServer, tmp_path: Path) -> None:
    a, b = elected(nats_server, tmp_path, "a"), elected(nats_server, tmp_path, "b")
    got = {"a": Collector(), "b": Collector()}
    await a.start()
    await b.start()
    stopped: set[str] = set()
    try:
        async with anyio.create_task_group() as tg:
            scopes = {}
            for src in (a, b):
                scope = anyio.CancelScope()
                scopes[src.instance] = scope

                async def run(src: NatsSource = src, scope: anyio.CancelScope = scope) -> None:
                    with scope:
                        await src.run(got[src.instance].emit)

                tg.start_soon(run)

            async def leaders() -> list[str]:
                out = []
                for src in (a, b):
                    if src.instance not in stopped and (await src.control("status", {}))["leader"]:
                        out.append(src.instance)
                return out

            await wait_for(lambda: _count(leaders(), 1))
            first = (await leaders())[0]
            other = "b" if first == "a" else "a"
            await publish_numbered(nats_server.url, SUBJECT, 10, prefix="p")
            # The new leader holds for takeover_delay, then emits everything at once.
            await wait_for(lambda: len(values(got[first].batches)) == 10)
            assert len(got[first].batches) == 1 and got[first].batches[0].origin is None
            assert got[other].batches == []
            assert await leaders() == [first]

            # The leader stops without the pipeline having accepted anything (its data
            # lost with it): the follower takes over at once, the messages come back to it.
            scopes[first].cancel()
            await (a if first == "a" else b).stop()
            stopped.add(first)
            await wait_for(lambda: _count(leaders(), 1), timeout=5)
            assert await leaders() == [other]
            await publish_numbered(nats_server.url, SUBJECT, 5, prefix="q")
            await wait_for(lambda: len(values(got[other].batches)) >= 15)
            batches = got[other].batches
            assert len(batches) == 1, "redeliveries and new messages in one batch"
            assert sorted(values(batches)) == sorted(list(range(10)) + list(range(5)))
            assert len(batches[0].acks) == 15
            for ack in batches[0].acks:
                ack.release(True)
            tg.cancel_scope.cancel()
    finally:
        for src in (a, b):
            if src.instance not in stopped:
                await src.stop()


async def _count(value: Any, n: int) -> bool:
    return len(await value) == n


async def test_dead_leader_is_replaced_after_the_ttl(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    a, b = elected(nats_server, tmp_path, "a"), elected(nats_server, tmp_path, "b")
    await a.start()
    await b.start()
    try:
        async with anyio.create_task_group() as tg:
            scope_a = anyio.CancelScope()

            async def run_a() -> None:
                with scope_a:
                    await a.run(Collector().emit)

            tg.start_soon(run_a)
            await wait_for(lambda: _leads(a))
            tg.start_soon(b.run, Collector().emit)
            # "a" dies: no resignation, its connection just goes away.
            scope_a.cancel()
            await close(a._nc)  # type: ignore[arg-type]
            await wait_for(lambda: _leads(b), timeout=10)
            tg.cancel_scope.cancel()
    finally:
        await a.stop()
        await b.stop()


async def _leads(src: NatsSource) -> bool:
    return bool((await src.control("status", {}))["leader"])
