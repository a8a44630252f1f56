"""Leader election over a JetStream KV bucket.

The bucket keeps one revision per key (history 1) and expires entries after `ttl` (the
bucket's max_age). Whoever creates the key `name` leads; the leader rewrites it every
ttl/3 with `update(..., last=revision)`, which fails as soon as anyone else wrote it, and
steps down at the first failure. Followers try `create` every ttl/3: it succeeds once the
key is gone, either deleted by a leader that stopped (at once) or expired after a leader
died (within ttl). The value is "<instance> <token>": the token is unique per election
object, so two sources in one process (same default instance name) never both lead,
while a write whose reply was lost can be recognised as our own.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

import anyio
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

OnChange = Callable[[bool], None]


class LeaderError(RuntimeError):
    """The election bucket cannot be opened."""


class Election:
    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        name: str,
        instance: str,
        ttl: float,
        log: logging.Logger,
        where: str,
        on_change: OnChange | None = None,
    ) -> None:
        self._js = js
        self.bucket = bucket
        self.name = name
        self.instance = instance
        self.ttl = ttl
        self._log = log
        self._where = where
        self._on_change = on_change
        self._value = f"{instance} {secrets.token_hex(6)}".encode()
        self._kv: KeyValue | None = None
        self._revision = 0
        self._refreshed = 0.0
        self.is_leader = False
        self.changed = anyio.Event()
        """Set at the next change of leadership (then replaced by a fresh event)."""

    @property
    def interval(self) -> float:
        return self.ttl / 3

    async def open(self) -> None:
        try:
            self._kv = await self._js.create_key_value(bucket=self.bucket, ttl=self.ttl, history=1)
        except nats.js.errors.BadRequestError:
            # It exists with other settings (another ttl): use it as it is.
            self._kv = await self._js.key_value(self.bucket)
            status = await self._kv.status()
            if status.ttl and abs(status.ttl - self.ttl) > 0.01:
                self._log.warning(
                    "%s: election bucket %r exists with ttl %.1fs, not leader_ttl %.1fs; "
                    "using the bucket's (delete the bucket to change it)",
                    self._where,
                    self.bucket,
                    status.ttl,
                    self.ttl,
                )
                self.ttl = status.ttl
        except Exception as exc:
            raise LeaderError(
                f"{self._where}: cannot open the election bucket {self.bucket!r} "
                f"({type(exc).__name__}: {exc}); check `leader_bucket` and that JetStream "
                "is enabled"
            ) from exc

    async def run(self) -> None:
        """Campaign, then keep the lead, until cancelled."""
        while True:
            await self.step()
            await anyio.sleep(self.interval)

    async def step(self) -> None:
        kv = self._kv
        if kv is None:
            return
        try:
            with anyio.fail_after(max(self.interval, 0.5)):
                if self.is_leader:
                    self._revision = await kv.update(self.name, self._value, last=self._revision)
                else:
                    self._revision = await kv.create(self.name, self._value)
                    self._set(True, "won the election")
            self._refreshed = time.monotonic()
        except nats.js.errors.KeyWrongLastSequenceError:
            if await self._ours():
                self._refreshed = time.monotonic()
                self._set(True, "the election key holds our value")
            elif self.is_leader and await self._retake():
                # The key expired while the server was away (a restart) and nobody took
                # it: still ours. Stepping down and winning again would cost the
                # takeover hold and make the data of the outage late.
                self._refreshed = time.monotonic()
                self._log.info("%s: re-took the expired election key %r", self._where, self.name)
            else:
                self._set(False, "another instance holds the election key")
        except (TimeoutError, nats.errors.Error) as exc:
            if self.is_leader:
                # Nobody can be elected while the server cannot be reached either: keep
                # the lead until the key would have expired, then step down.
                if time.monotonic() - self._refreshed >= self.ttl:
                    self._set(False, f"could not refresh the election key ({type(exc).__name__})")
                else:
                    self._log.debug("%s: election refresh failed: %r", self._where, exc)
            else:
                self._log.debug("%s: election attempt failed: %r", self._where, exc)

    async def _retake(self) -> bool:
        kv = self._kv
        if kv is None:
            return False
        try:
            with anyio.fail_after(max(self.interval, 0.5)):
                self._revision = await kv.create(self.name, self._value)
        except (TimeoutError, nats.errors.Error):
            return False
        return True

    async def _ours(self) -> bool:
        """Whether the key holds our value (a write that succeeded without our seeing the
        reply); if so, adopt its revision."""
        kv = self._kv
        if kv is None:
            return False
        try:
            with anyio.fail_after(max(self.interval, 0.5)):
                entry = await kv.get(self.name)
        except (TimeoutError, nats.errors.Error):
            return False
        if entry.value == self._value and entry.revision is not None:
            self._revision = entry.revision
            return True
        return False

    async def resign(self) -> None:
        """Delete the key if we hold it, so another instance takes over at once."""
        kv = self._kv
        if not self.is_leader or kv is None:
            return
        try:
            with anyio.fail_after(2):
                await kv.delete(self.name, last=self._revision)
        except (TimeoutError, nats.errors.Error) as exc:
            self._log.warning(
                "%s: could not release the election key %r (%s); another instance takes "
                "over within leader_ttl",
                self._where,
                self.name,
                exc,
            )
        self._set(False, "stopped")

    async def holder(self) -> str | None:
        """The instance holding the lead now, if any."""
        kv = self._kv
        if kv is None:
            return None
        try:
            entry = await kv.get(self.name)
        except (TimeoutError, nats.errors.Error):
            return None
        return (entry.value or b"").decode(errors="replace").rsplit(" ", 1)[0] or None

    def _set(self, leader: bool, reason: str) -> None:
        if leader == self.is_leader:
            return
        self.is_leader = leader
        self._log.info(
            "%s: %s leadership of %r as instance %r (%s)",
            self._where,
            "took" if leader else "lost",
            self.name,
            self.instance,
            reason,
        )
        changed, self.changed = self.changed, anyio.Event()
        changed.set()
        if self._on_change is not None:
            self._on_change(leader)
