"""The durable outbox with real loopback receivers: committed before sending, retried with
backoff through refusals (503, 429 + Retry-After), dead rows kept with their reason, and
nothing lost across a SIGKILL of the delivering process."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from revopipe_plugins.alerts.notify import (
    Channel,
    Delivery,
    Notification,
    Outbox,
    WebhookChannel,
    backoff_delay,
)
from revopipe_plugins.alerts.tests.receiver import serve

Behave = Callable[[dict[str, Any]], web.Response]


@asynccontextmanager
async def receiver(
    behave: Behave | None = None, port: int = 0
) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """Records only the bodies it accepted (2xx)."""
    accepted: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        response = behave(body) if behave else web.Response(text="ok")
        if 200 <= response.status < 300:
            accepted.append(body)
        return response

    async with serve("POST", "/hook", handle, port=port) as base:
        yield f"{base}/hook", accepted


def received_keys(bodies: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{a['fingerprint']}:{a['status']}" for b in bodies for a in b["alerts"])


def note(fp: str, status: str = "firing", group: str = "g1") -> Notification:
    return Notification(
        dedup_key=f"{fp}:{status}",
        status=status,  # type: ignore[arg-type]
        alert_name="service_down",
        severity="critical",
        fingerprint=fp,
        group_key=group,
        starts_at_ns=1_700_000_000_000_000_000,
        labels={"service": fp},
        annotations={"summary": f"{fp} down"},
    )


class FakeTime:
    """Clock + sleeper: sleeping advances the clock, so backoff and Retry-After are
    exercised in full without the test waiting for them."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.sleep(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recording(Channel):
    """A channel without HTTP, to drive the outbox's bookkeeping directly."""

    type_name = "recording"

    def __init__(self, results: list[Delivery]) -> None:
        super().__init__("rec", {"type": "recording"})
        self.results = results
        self.sent: list[list[str]] = []

    async def send(self, batch: Any) -> Delivery:
        self.sent.append([n.dedup_key for n in batch])
        return self.results.pop(0) if self.results else Delivery.delivered()


def test_backoff_is_full_jitter_capped_and_honours_retry_after():
    rng = random.Random(7)
    for attempts in range(1, 40):
        ceiling = min(30.0, 0.5 * 2 ** (attempts - 1))
        for _ in range(20):
            assert 0.0 <= backoff_delay(attempts, 0.5, 30.0, rng) <= ceiling
    assert backoff_delay(1, 0.5, 30.0, rng, retry_after=120.0) >= 120.0
    assert backoff_delay(10**6, 0.5, 30.0, rng) <= 30.0  # no overflow on huge counts


@pytest.mark.anyio
async def test_enqueue_commits_before_sending_and_dedupes(tmp_path: Path):
    channel = Recording([])
    outbox = Outbox(tmp_path / "outbox.db", {"rec": channel})
    assert await outbox.enqueue("rec", [note("a"), note("b")]) == 2
    # Same (channel, dedup_key, status) still pending: not added again.
    assert await outbox.enqueue("rec", [note("a"), note("a", "resolved")]) == 1
    assert channel.sent == []  # enqueue never sends
    # Visible to another connection: the rows are committed, not just buffered.
    with sqlite3.connect(tmp_path / "outbox.db") as other:
        assert other.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 3
    assert await outbox.deliver_due() == 3
    # Once delivered, the same key may be notified again (a later re-fire).
    assert await outbox.enqueue("rec", [note("a")]) == 1
    assert (await outbox.counts()).pending == 1
    with pytest.raises(KeyError, match=r"unknown channel 'nope'.*rec"):
        await outbox.enqueue("nope", [note("a")])
    await outbox.aclose()


@pytest.mark.anyio
async def test_permanent_failure_is_kept_dead_with_reason(tmp_path: Path):
    def reject(_body: dict[str, Any]) -> web.Response:
        return web.Response(status=400, text="bad receiver config")

    async with receiver(reject) as (url, accepted):
        channel = WebhookChannel("hook", {"type": "webhook", "url": url})
        outbox = Outbox(tmp_path / "o.db", {"hook": channel})
        await outbox.enqueue("hook", [note("a"), note("b")])
        assert await outbox.deliver_due() == 0
        counts = await outbox.counts()
        assert (counts.pending, counts.delivered, counts.dead) == (0, 0, 2)
        dead = await outbox.dead()
        assert [d["dedup_key"] for d in dead] == ["a:firing", "b:firing"]
        assert "HTTP 400" in dead[0]["last_error"]
        assert "bad receiver config" in dead[0]["last_error"]
        await channel.aclose()
        await outbox.aclose()
    assert accepted == []


@pytest.mark.anyio
async def test_max_attempts_gives_up_and_raising_channel_is_retried(tmp_path: Path):
    class Broken(Recording):
        async def send(self, batch: Any) -> Delivery:
            raise RuntimeError("boom")

    fake = FakeTime()
    outbox = Outbox(tmp_path / "o.db", {"rec": Broken([])}, max_attempts=3, clock=fake.clock)
    await outbox.enqueue("rec", [note("a")])
    for _ in range(3):
        fake.now += 10_000
        await outbox.deliver_due()
    dead = await outbox.dead()
    assert len(dead) == 1
    assert dead[0]["attempts"] == 3
    assert "gave up after 3 attempts" in dead[0]["last_error"]
    assert "RuntimeError: boom" in dead[0]["last_error"]
    await outbox.aclose()


@pytest.mark.anyio
async def test_unreadable_row_is_parked_dead_and_the_rest_still_delivered(tmp_path: Path):
    channel = Recording([])
    outbox = Outbox(tmp_path / "o.db", {"rec": channel})
    await outbox.enqueue("rec", [note("a"), note("b")])
    with sqlite3.connect(tmp_path / "o.db") as other:
        other.execute("UPDATE outbox SET payload = '{not json' WHERE dedup_key = 'a:firing'")
    assert await outbox.deliver_due() == 1
    assert channel.sent == [["b:firing"]]
    dead = await outbox.dead()
    assert [d["dedup_key"] for d in dead] == ["a:firing"]
    assert "unreadable outbox row" in dead[0]["last_error"]
    await outbox.aclose()


@pytest.mark.anyio
async def test_run_wakes_on_enqueue_instead_of_waiting_for_the_poll(tmp_path: Path):
    async with receiver() as (url, accepted):
        channel = WebhookChannel("hook", {"type": "webhook", "url": url})
        outbox = Outbox(tmp_path / "o.db", {"hook": channel}, poll_interval=3600)
        async with anyio.create_task_group() as tg:
            tg.start_soon(outbox.run)
            await anyio.sleep(0.05)  # let the loop go idle on its hour-long poll
            await outbox.enqueue("hook", [note("a")])
            with anyio.fail_after(10):
                while not accepted:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        await channel.aclose()
        await outbox.aclose()
    assert received_keys(accepted) == Counter({"a:firing": 1})


@pytest.mark.anyio
async def test_absurd_retry_after_is_capped(tmp_path: Path):
    fake = FakeTime()
    channel = Recording([Delivery.retry("busy", retry_after=10.0**9)])
    outbox = Outbox(tmp_path / "o.db", {"rec": channel}, retry_after_max=600, clock=fake.clock)
    await outbox.enqueue("rec", [note("a")])
    await outbox.deliver_due()
    due = await outbox.next_due()
    assert due is not None and fake.now + 600 - 1e-6 <= due <= fake.now + 600 + 1e-6
    await outbox.aclose()


@pytest.mark.anyio
async def test_database_error_does_not_end_the_delivery_loop(tmp_path: Path, monkeypatch):
    fake = FakeTime()
    channel = Recording([])
    outbox = Outbox(tmp_path / "o.db", {"rec": channel}, clock=fake.clock, sleeper=fake.sleep)
    await outbox.enqueue("rec", [note("a")])
    real = outbox.deliver_due
    failures = [sqlite3.OperationalError("database is locked")]

    async def flaky(now: float | None = None) -> int:
        if failures:
            raise failures.pop()
        return await real(now)

    monkeypatch.setattr(outbox, "deliver_due", flaky)
    with anyio.fail_after(10):
        await outbox.run(until_idle=True)
    assert channel.sent == [["a:firing"]]
    assert fake.sleeps == [outbox.poll_interval]
    await outbox.aclose()


@pytest.mark.anyio
async def test_retention_purges_old_delivered_rows_only(tmp_path: Path):
    fake = FakeTime()
    channel = Recording([Delivery.delivered(), Delivery.failed("nope")])
    outbox = Outbox(tmp_path / "o.db", {"rec": channel}, retention=3600, clock=fake.clock)
    await outbox.enqueue("rec", [note("a", group="g1")])
    await outbox.enqueue("rec", [note("b", group="g2")])
    await outbox.deliver_due()
    fake.now += 1800
    assert await outbox.purge() == 0
    fake.now += 1801
    assert await outbox.purge() == 1
    counts = await outbox.counts()
    assert (counts.pending, counts.delivered, counts.dead) == (0, 0, 1)
    await outbox.aclose()


@pytest.mark.anyio
async def test_refusing_receiver_then_recovery_loses_and_duplicates_nothing(tmp_path: Path):
    """Refuses for 30 s (fake time): 503s, then 429 with Retry-After, then accepts."""
    fake = FakeTime()
    start = fake.now
    # Per dedup key: (fake time, answer) of every attempt.
    attempts: dict[str, list[tuple[float, int]]] = {}

    def flaky(body: dict[str, Any]) -> web.Response:
        elapsed = fake.now - start
        status = 503 if elapsed < 20 else 429 if elapsed < 30 else 200
        for key in received_keys([body]):
            attempts.setdefault(key, []).append((fake.now, status))
        if status == 503:
            return web.Response(status=503, text="maintenance")
        if status == 429:
            return web.Response(status=429, headers={"Retry-After": "7"})
        return web.Response(text="ok")

    async with receiver(flaky) as (url, accepted):
        channel = WebhookChannel("hook", {"type": "webhook", "url": url})
        outbox = Outbox(
            tmp_path / "o.db",
            {"hook": channel},
            batch_size=4,
            backoff_base=0.5,
            backoff_max=4.0,
            clock=fake.clock,
            sleeper=fake.sleep,
            rng=random.Random(1),
        )
        expected = {f"svc{i}:firing" for i in range(10)} | {"svc0:resolved"}
        await outbox.enqueue("hook", [note(f"svc{i}", group=f"g{i % 3}") for i in range(10)])
        await outbox.enqueue("hook", [note("svc0", "resolved", group="g0")])
        with anyio.fail_after(20):
            await outbox.deliver_due()
            # A re-evaluation re-notifies while the first copies wait: deduped.
            assert await outbox.enqueue("hook", [note("svc1", group="g1")]) == 0
            await outbox.run(until_idle=True)
        counts = await outbox.counts()
        await channel.aclose()
        await outbox.aclose()

    assert (counts.pending, counts.delivered, counts.dead) == (0, 11, 0)
    keys = received_keys(accepted)
    assert set(keys) == expected
    assert all(n == 1 for n in keys.values()), keys
    assert {s for tries in attempts.values() for _, s in tries} == {503, 429, 200}
    for tries in attempts.values():
        assert tries[-1][1] == 200
        # After a 429 with Retry-After: 7, that row was not tried again for 7 s.
        for (t, status), (t_next, _) in itertools.pairwise(tries):
            if status == 429:
                assert t_next - t >= 7


WORKER = textwrap.dedent(
    """
    import sys
    import anyio
    from revopipe_plugins.alerts.notify import Notification, Outbox, WebhookChannel

    mode, db, url, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    async def main() -> None:
        channel = WebhookChannel("hook", {"type": "webhook", "url": url, "timeout": "2s"})
        outbox = Outbox(
            db, {"hook": channel}, batch_size=3, backoff_base=0.05, backoff_max=0.2,
            poll_interval=0.1,
        )
        if mode == "enqueue":
            notes = [
                Notification(
                    dedup_key=f"n{i}:firing", status="firing", alert_name="service_down",
                    severity="critical", fingerprint=f"n{i}", group_key=f"g{i % 4}",
                    starts_at_ns=1_700_000_000_000_000_000, labels={"service": f"n{i}"},
                )
                for i in range(count)
            ]
            await outbox.enqueue("hook", notes)
            print("ENQUEUED", flush=True)
            await outbox.run()  # the receiver is down: retries until killed
        else:
            await outbox.run(until_idle=True)
            counts = await outbox.counts()
            print(f"DONE {counts.pending} {counts.delivered} {counts.dead}", flush=True)
        await channel.aclose()

    anyio.run(main)
    """
)


def attempted(db: Path) -> int:
    with sqlite3.connect(db, timeout=5) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE attempts > 0").fetchone()[0])


@pytest.mark.slow
@pytest.mark.anyio
async def test_sigkill_with_pending_rows_then_restart_delivers_each_once(tmp_path: Path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    db = tmp_path / "data" / "outbox.db"
    port = free_port()  # nothing listens here yet: the receiver is down
    url = f"http://127.0.0.1:{port}/hook"
    count = 20

    first = subprocess.Popen(
        [sys.executable, str(script), "enqueue", str(db), url, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "ENQUEUED"
        deadline = time.monotonic() + 15
        # Kill it mid-retry: only once delivery has been attempted (and failed) for rows.
        while attempted(db) == 0:
            assert time.monotonic() < deadline, "worker never attempted delivery"
            assert first.poll() is None, "worker exited early"
            await anyio.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stdout is not None:
            first.stdout.close()

    with sqlite3.connect(db) as conn:
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
    assert pending[0] == count

    async with receiver(port=port) as (_url, accepted):
        second = await anyio.run_process(
            [sys.executable, str(script), "deliver", str(db), url, str(count)], check=False
        )
        assert second.returncode == 0, second.stderr.decode()
        assert second.stdout.decode().split() == ["DONE", "0", str(count), "0"]

    keys = received_keys(accepted)
    assert set(keys) == {f"n{i}:firing" for i in range(count)}
    assert all(n == 1 for n in keys.values()), keys


@pytest.mark.slow
@pytest.mark.anyio
async def test_sigkill_mid_request_resends_with_same_keys_so_receiver_can_dedupe(
    tmp_path: Path,
):
    """Killed after the receiver got a message but before the outbox recorded it: the
    message is sent again after restart (at least once) with the same dedup keys and
    Idempotency-Key, so a deduping receiver sees every notification exactly once."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    db = tmp_path / "outbox.db"
    count = 7
    seen: list[tuple[str, dict[str, Any]]] = []
    release = anyio.Event()

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.headers["Idempotency-Key"], await request.json()))
        if len(seen) == 1:
            await release.wait()  # hold the first request open until its sender is killed
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        first = subprocess.Popen(
            [sys.executable, str(script), "enqueue", str(db), url, str(count)],
            stdout=subprocess.DEVNULL,
        )
        try:
            with anyio.fail_after(15):
                while not seen:
                    assert first.poll() is None, "worker exited early"
                    await anyio.sleep(0.02)
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        release.set()
        second = await anyio.run_process(
            [sys.executable, str(script), "deliver", str(db), url, str(count)], check=False
        )
        assert second.returncode == 0, second.stderr.decode()
        assert second.stdout.decode().split() == ["DONE", "0", str(count), "0"]
    finally:
        release.set()
        await runner.cleanup()

    raw = received_keys([body for _, body in seen])
    assert set(raw) == {f"n{i}:firing" for i in range(count)}
    in_flight_key, in_flight = seen[0]
    # The interrupted message is the only thing sent twice, and it is recognisable.
    assert [key for key, _ in seen].count(in_flight_key) == 2
    assert {k: n for k, n in raw.items() if n > 1} == dict.fromkeys(received_keys([in_flight]), 2)
    assert len({key for key, _ in seen}) == len(seen) - 1
