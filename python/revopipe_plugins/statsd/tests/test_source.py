"""The `statsd` source on its own, on loopback: config errors, drain, early flush by size,
malformed lines in the stats and the log, a full backlog, IPv6 and the receive buffer."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from revopipe import Batch
from revopipe.config.address import parse_address
from revopipe.testing import make
from revopipe_plugins.statsd.receiver import receive_buffer_size
from revopipe_plugins.statsd.source import StatsdSource

pytestmark = pytest.mark.anyio


def source(tmp_path: Path, **config: Any) -> StatsdSource:
    return make(StatsdSource, {"address": "127.0.0.1:0", **config}, tmp_path, name="sd")


async def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.005)


def sender(src: StatsdSource) -> Callable[[bytes], None]:
    assert src.bound_address is not None
    family = socket.AF_INET6 if ":" in src.bound_address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    address = src.bound_address
    return lambda data: sock.sendto(data, address) and None


async def running(
    src: StatsdSource,
    body: Callable[[list[Batch]], Awaitable[None]],
    emit: Callable[[Batch], Awaitable[None]] | None = None,
) -> list[Batch]:
    """Starts the source, runs `body` while it runs, then cancels it (a drain) and stops."""
    batches: list[Batch] = []

    async def keep(batch: Batch) -> None:
        batches.append(batch)

    await src.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(src.run, emit or keep)
            await body(batches)
            tg.cancel_scope.cancel()
    finally:
        await src.stop()
    return batches


def values(batches: list[Batch]) -> list[tuple[str, float]]:
    return [(m.name, m.value) for b in batches for m in b.metrics]


def test_address_forms() -> None:
    assert parse_address("127.0.0.1:8125") == ("127.0.0.1", 8125)
    assert parse_address("[::1]:9") == ("::1", 9)
    assert parse_address(" localhost:0 ") == ("127.0.0.1", 0)
    assert parse_address(":8125") == ("", 8125)  # every interface
    for bad, why in [
        ("8125", "host:port"),
        ("::1:8125", r"\[::1\]"),
        ("h:http", "host:port"),
        ("h:70000", "port"),
        ("[::1]8125", "host:port"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_address(bad)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="address"):
        make(StatsdSource, {"address": "::1:8125"}, tmp_path)
    with pytest.raises(ValidationError, match="flush_interval"):
        make(StatsdSource, {"flush_interval": "0s"}, tmp_path)
    with pytest.raises(ValidationError, match="max_series"):
        make(StatsdSource, {"max_series": 0}, tmp_path)
    with pytest.raises(ValidationError, match="receive_buffer"):
        make(StatsdSource, {"receive_buffer": "lots"}, tmp_path)
    with pytest.raises(ValidationError, match=r"adress"):
        make(StatsdSource, {"adress": "127.0.0.1:1"}, tmp_path)


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        src = source(tmp_path, address=f"127.0.0.1:{port}")
        with pytest.raises(OSError, match=r"statsd source 'sd': cannot listen on .*'address'"):
            await src.start()
        await src.stop()
    finally:
        taken.close()


async def test_drain_emits_what_was_received(tmp_path: Path) -> None:
    src = source(tmp_path, flush_interval="1h")

    async def body(batches: list[Batch]) -> None:
        send = sender(src)
        for i in range(50):
            send(b"g:%d|g" % i)
        await wait_for(lambda: src.received_datagrams == 50)
        assert batches == []  # nothing is parsed before the interval (or the drain)

    batches = await running(src, body)
    assert values(batches) == [("g", float(i)) for i in range(50)]


async def test_a_full_batch_is_parsed_before_the_interval(tmp_path: Path) -> None:
    src = source(tmp_path, flush_interval="1h", max_batch_bytes=100)

    async def body(batches: list[Batch]) -> None:
        send = sender(src)
        for _ in range(20):
            send(b"count.me:1|c")  # 12 bytes: the 9th passes 100
        await wait_for(lambda: len(batches) >= 1)

    batches = await running(src, body)
    assert values(batches)[-1] == ("count.me", 20.0)
    assert sum(len(b) for b in batches) >= 2


async def test_bad_lines_in_stats_and_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = source(tmp_path, flush_interval="10ms")
    stats = src.context.stats

    async def body(batches: list[Batch]) -> None:
        send = sender(src)
        # one datagram, so one parse and one (rate-limited) log line
        send(b"ok:1|g\nnot a metric\nx:1|zz\n\xff\xfe\n_e{1,1}:a|b\n_sc|db|0\nok:2|g")
        await wait_for(lambda: stats.errors == 3 and stats.dropped == 2)

    with caplog.at_level(logging.INFO, logger="revopipe.test.sd"):
        batches = await running(src, body)
    assert values(batches) == [("ok", 1.0), ("ok", 2.0)]
    assert stats.events_in == 7
    assert stats.last_error.startswith("malformed StatsD line: no ':'")
    assert '"not a metric"' in stats.last_error
    logged = caplog.text
    assert "skipped 3 malformed line(s), e.g. no ':'" in logged
    assert "2 DogStatsD event / service check" in logged


async def test_a_slow_downstream_fills_the_backlog_then_drops_and_counts(tmp_path: Path) -> None:
    src = source(tmp_path, flush_interval="10ms", max_batch_bytes=64)
    entered, release = anyio.Event(), anyio.Event()
    got: list[Batch] = []

    async def slow(batch: Batch) -> None:
        entered.set()
        await release.wait()
        got.append(batch)

    async def body(_: list[Batch]) -> None:
        send = sender(src)
        send(b"first:1|c")
        await entered.wait()
        for _ in range(200):
            send(b"more:1|c")  # 9 bytes each with its newline; the backlog holds 8 x 64
        receiver = src._receiver
        await wait_for(lambda: receiver.datagrams + receiver.dropped == 201)
        release.set()
        await wait_for(lambda: src.context.stats.dropped > 0)

    await running(src, body, emit=slow)
    received = src.received_datagrams
    assert 50 <= received - 1 < 200  # about 512 bytes' worth
    assert src.context.stats.dropped == 201 - received
    totals = [m.value for b in got for m in b.metrics if m.name == "more"]
    assert totals[-1] == received - 1


async def test_ipv6_loopback(tmp_path: Path) -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    src = source(tmp_path, address="[::1]:0", flush_interval="10ms")

    async def body(batches: list[Batch]) -> None:
        sender(src)(b"v6:1|g")
        await wait_for(lambda: len(batches) == 1)

    assert values(await running(src, body)) == [("v6", 1.0)]


async def test_receive_buffer_is_applied(tmp_path: Path) -> None:
    src = source(tmp_path, receive_buffer="256KiB")
    await src.start()
    try:
        assert receive_buffer_size(src._receiver.sock) >= 256 * 1024
    finally:
        await src.stop()
