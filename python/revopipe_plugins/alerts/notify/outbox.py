"""The durable notification outbox: every notification is committed to SQLite before any
send is tried, then delivered by a loop that retries with capped exponential backoff and
full jitter. A row leaves the pending state only once its channel said delivered (or failed
for good), so a kill -9 at any point loses nothing: after restart the pending rows are sent
again with the same dedup key (at least once; receivers dedupe)."""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from revopipe.notify import Channel, Delivery, Notification
from revopipe.state import open_sqlite

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleeper = Callable[[float], Awaitable[None]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    status TEXT NOT NULL,
    group_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_pending_once
    ON outbox (channel, dedup_key, status) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, channel, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_done ON outbox (state, updated_at);
"""


def backoff_delay(
    attempts: int,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Full jitter (uniform in [0, min(cap, base * 2**(attempts-1))]) so many failing
    senders do not retry in lockstep; a receiver's Retry-After is a floor, never cut by the
    cap because sending earlier would only be refused again."""
    ceiling = min(cap, base * 2.0 ** max(0, min(attempts - 1, 62)))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    delivered: int
    dead: int


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    channel: str
    group_key: str
    attempts: int
    notification: Notification


class Outbox:
    """SQLite outbox at `path` (WAL). `channels` are the configured channels by name; rows
    for a channel that is no longer configured stay pending (never dropped) until it is
    configured again.

    `clock` (Unix seconds), `sleeper` and `rng` are injectable for tests."""

    def __init__(
        self,
        path: str | Path,
        channels: Mapping[str, Channel],
        *,
        batch_size: int = 100,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        max_attempts: int | None = None,
        retry_after_max: float = 3600.0,
        retention: float = 7 * 86400.0,
        poll_interval: float = 1.0,
        clock: Clock = time.time,
        sleeper: Sleeper | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"outbox: batch_size must be >= 1, got {batch_size}")
        if backoff_base <= 0 or backoff_max < backoff_base:
            raise ValueError(
                f"outbox: need 0 < backoff_base <= backoff_max, got {backoff_base}/{backoff_max}"
            )
        self.path = Path(path)
        self.channels = dict(channels)
        self.batch_size = batch_size
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.retry_after_max = retry_after_max
        self.retention = retention
        self.poll_interval = poll_interval
        self.clock = clock
        self._sleeper = sleeper
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        # Created by run(): an anyio Event needs a running event loop.
        self._wake: anyio.Event | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Worker threads take turns on one connection under _lock.
        # FULL: an enqueue that returned must survive power loss, not only a process kill.
        self._db = open_sqlite(self.path, _SCHEMA, synchronous="FULL")

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn()

        return await anyio.to_thread.run_sync(locked)

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return result

    async def aclose(self) -> None:
        await self._run(self._db.close)

    # -- enqueue ----------------------------------------------------------------------

    async def enqueue(self, channel: str, notifications: Sequence[Notification]) -> int:
        """Commit `notifications` for `channel`; returns how many were new. One still
        pending with the same (channel, dedup_key, status) is not added twice. Returns only
        after the commit, so a caller may then forget the notifications."""
        if channel not in self.channels:
            raise KeyError(
                f"outbox: unknown channel {channel!r}; configured: "
                f"{', '.join(sorted(self.channels)) or 'none'}"
            )
        now = self.clock()
        rows = [
            (channel, n.dedup_key, n.status, n.group_key, n.to_json(), now, now, now)
            for n in notifications
        ]

        def insert(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (channel, dedup_key, status, group_key, payload,"
                " created_at, next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

        added = await self._run(lambda: self._tx(insert))
        if added and self._wake is not None:
            self._wake.set()
        return added

    # -- delivery ---------------------------------------------------------------------

    def _due(self, now: float) -> list[_Row]:
        names = list(self.channels)
        if not names:
            return []
        marks = ",".join("?" * len(names))
        cur = self._db.execute(
            f"SELECT id, channel, group_key, attempts, payload FROM outbox"
            f" WHERE state = 'pending' AND next_attempt_at <= ? AND channel IN ({marks})"
            f" ORDER BY id LIMIT ?",
            (now, *names, self.batch_size * 16),
        )
        rows: list[_Row] = []
        unreadable: list[tuple[float, str, int]] = []
        for id_, ch, gk, att, payload in cur.fetchall():
            try:
                rows.append(_Row(id_, ch, gk, att, Notification.from_json(payload)))
            except (ValueError, TypeError) as exc:
                # Written by another version or damaged: park it as dead (kept, visible in
                # dead()) instead of failing the whole delivery loop on every turn.
                unreadable.append((now, f"unreadable outbox row: {exc}", id_))
        if unreadable:
            log.error("outbox %s: %d unreadable row(s) marked dead", self.path, len(unreadable))
            self._tx(
                lambda db: db.executemany(
                    "UPDATE outbox SET state = 'dead', updated_at = ?, last_error = ? WHERE id = ?",
                    unreadable,
                )
            )
        return rows

    def _batches(self, rows: list[_Row]) -> list[list[_Row]]:
        # One message per (channel, group): a message carries one group like Alertmanager's.
        groups: dict[tuple[str, str], list[_Row]] = {}
        for row in rows:
            groups.setdefault((row.channel, row.group_key), []).append(row)
        out: list[list[_Row]] = []
        for members in groups.values():
            for i in range(0, len(members), self.batch_size):
                out.append(members[i : i + self.batch_size])
        return out

    def _record(self, batch: list[_Row], result: Delivery, now: float) -> None:
        ids = [r.id for r in batch]
        if result.outcome == "delivered":
            self._tx(
                lambda db: db.executemany(
                    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1,"
                    " updated_at = ?, last_error = '' WHERE id = ?",
                    [(now, i) for i in ids],
                )
            )
            return
        attempts = max(r.attempts for r in batch) + 1
        dead = result.outcome == "failed" or (
            self.max_attempts is not None and attempts >= self.max_attempts
        )
        if dead:
            reason = result.reason
            if result.outcome != "failed":
                reason = f"gave up after {attempts} attempts: {reason}"
            self._tx(
                lambda db: db.executemany(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1,"
                    " updated_at = ?, last_error = ? WHERE id = ?",
                    [(now, reason, i) for i in ids],
                )
            )
            return
        retry_after = result.retry_after
        if retry_after is not None:
            # A broken or hostile Retry-After (years away) must not park rows forever.
            retry_after = min(retry_after, self.retry_after_max)
        delay = backoff_delay(attempts, self.backoff_base, self.backoff_max, self.rng, retry_after)
        self._tx(
            lambda db: db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                " updated_at = ?, last_error = ? WHERE id = ?",
                [(now + delay, now, result.reason, i) for i in ids],
            )
        )

    async def _send(self, batch: list[_Row]) -> Delivery:
        channel = self.channels[batch[0].channel]
        try:
            return await channel.send([r.notification for r in batch])
        except Exception as exc:  # a channel bug must not kill delivery for everyone
            log.exception("outbox: channel %r raised while sending", channel.name)
            return Delivery.retry(f"channel {channel.name!r} raised {type(exc).__name__}: {exc}")

    async def deliver_due(self, now: float | None = None) -> int:
        """Send every row due at `now` (default: the clock); returns how many rows were
        delivered. Channels are sent to concurrently so one slow channel delays no other."""
        at = self.clock() if now is None else now
        rows = await self._run(lambda: self._due(at))
        if not rows:
            return 0
        delivered = 0
        by_channel: dict[str, list[list[_Row]]] = {}
        for batch in self._batches(rows):
            by_channel.setdefault(batch[0].channel, []).append(batch)

        async def drain(batches: list[list[_Row]]) -> None:
            nonlocal delivered
            for batch in batches:
                result = await self._send(batch)
                done = self.clock() if now is None else at

                def record(b: list[_Row] = batch, r: Delivery = result, t: float = done) -> None:
                    self._record(b, r, t)

                await self._run(record)
                if result.outcome == "delivered":
                    delivered += len(batch)
                else:
                    log.warning(
                        "outbox: %d notification(s) for channel %r not delivered (%s): %s",
                        len(batch),
                        batch[0].channel,
                        result.outcome,
                        result.reason,
                    )
                    if result.outcome == "retry":
                        break  # the channel is unhealthy: keep the rest for its next turn

        async with anyio.create_task_group() as tg:
            for batches in by_channel.values():
                tg.start_soon(drain, batches)
        return delivered

    def _next_due(self) -> float | None:
        names = list(self.channels)
        if not names:
            return None
        marks = ",".join("?" * len(names))
        row = self._db.execute(
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'"
            f" AND channel IN ({marks})",
            names,
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def next_due(self) -> float | None:
        """When the earliest pending row becomes due (clock seconds), or None."""
        return await self._run(self._next_due)

    async def purge(self, now: float | None = None) -> int:
        """Delete delivered rows older than `retention`; dead rows are kept for inspection."""
        cutoff = (self.clock() if now is None else now) - self.retention
        return await self._run(
            lambda: self._tx(
                lambda db: (
                    db.execute(
                        "DELETE FROM outbox WHERE state = 'delivered' AND updated_at < ?", (cutoff,)
                    ).rowcount
                )
            )
        )

    async def _sleep(self, seconds: float) -> None:
        if self._sleeper is not None:
            await self._sleeper(seconds)
            return
        with anyio.move_on_after(seconds):
            if self._wake is not None:
                await self._wake.wait()
            else:
                await anyio.sleep(seconds)

    async def run(self, *, until_idle: bool = False) -> None:
        """Deliver forever (cancel to stop). With `until_idle`, return once nothing is
        pending for the configured channels, which is what a one-shot flush wants."""
        while True:
            self._wake = anyio.Event()
            try:
                await self.deliver_due()
                await self.purge()
                due = await self.next_due()
            except sqlite3.Error:
                # Disk full or locked for too long: rows stay pending, so try again later
                # rather than end delivery for the life of the process.
                log.exception(
                    "outbox %s: database error; retrying in %ss", self.path, self.poll_interval
                )
                await self._sleep(self.poll_interval)
                continue
            if due is None:
                if until_idle:
                    return
                wait = self.poll_interval
            else:
                wait = min(self.poll_interval, max(0.0, due - self.clock()))
            if wait > 0:
                await self._sleep(wait)

    # -- inspection -------------------------------------------------------------------

    def _counts(self) -> OutboxCounts:
        found = dict(
            self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        )
        return OutboxCounts(
            int(found.get("pending", 0)), int(found.get("delivered", 0)), int(found.get("dead", 0))
        )

    async def known_keys(self) -> set[str]:
        """Every dedup key the outbox holds, pending, delivered (within `retention`) or
        dead: after a restart, what was already handed over and must not be queued anew."""
        return await self._run(
            lambda: {k for (k,) in self._db.execute("SELECT DISTINCT dedup_key FROM outbox")}
        )

    async def counts(self) -> OutboxCounts:
        return await self._run(self._counts)

    async def dead(self) -> list[dict[str, Any]]:
        """Permanently failed rows with their reason, oldest first."""

        def query() -> list[dict[str, Any]]:
            cur = self._db.execute(
                "SELECT channel, dedup_key, status, attempts, last_error, updated_at"
                " FROM outbox WHERE state = 'dead' ORDER BY id"
            )
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

        return await self._run(query)
