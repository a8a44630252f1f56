"""The `nats` source: batches from a durable JetStream pull consumer, acknowledged only once
the pipeline accepted them.

Every instance with the same `durable` pulls from the same consumer, so the server spreads
the messages among them (a queue group). Each message becomes one batch carrying an
`Ack`; when the sinks have written it (or dead-lettered it) the verdict comes back and the
message is acked, or nak'ed for a redelivery if a branch dropped it. Held messages (data
waiting in an open window) get an in-progress signal every ack_wait/3 so the server does
not redeliver them while this process lives. Message ids (header Nats-Msg-Id, else
"<stream>:<sequence>") are remembered (`dedup`) so a redelivery of data already accepted,
or still held, is never emitted twice.

With `leader` set, only the instance elected over a KV bucket (`leader`) fetches. A new
leader first holds everything it fetches for `takeover_delay` (the old leader's unacked
messages come back within ack_wait) and emits it as ONE batch, so a window split between
those redeliveries and newer messages reaches the aggregate in one piece.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from revopipe.acks import Ack, AckCallback
from revopipe.batch import Batch, MetricBatch
from revopipe.components import ControlMode, Emit, Source
from revopipe.events import Event
from revopipe.wire.batch import WireError, decode_batch
from revopipe_plugins.nats.config import NatsSourceConfig
from revopipe_plugins.nats.connection import close, connect
from revopipe_plugins.nats.dedup import Dedup, State
from revopipe_plugins.nats.leader import Election
from revopipe_plugins.nats.stream import ensure_stream

FETCH_WAIT = 1.0
"""Longest wait of one fetch: bounds how late a drain or a lost leadership is noticed."""
NAK_DELAY = 0.5
"""A dropped batch is redelivered after this delay, not in a tight loop under overload."""
RETRY_WAIT = 0.5
"""Pause after a failed fetch (server gone, consumer being recreated)."""
MSG_ID = "Nats-Msg-Id"


class ConsumerError(RuntimeError):
    """The durable consumer exists with a filter other than `subject`."""


@dataclass(slots=True)
class _Held:
    metrics: MetricBatch
    events: tuple[Event, ...]
    ack: Ack


def default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class NatsSource(Source[NatsSourceConfig]):
    type_name = "nats"
    Config = NatsSourceConfig
    description = "batches from a NATS JetStream durable consumer, acked once written"
    control_actions: ClassVar[Mapping[str, ControlMode]] = {"status": "read"}

    async def start(self) -> None:
        cfg = self.config
        self.instance = cfg.instance or default_instance()
        self._where = f"nats source {self.context.name!r}"
        self._loop = asyncio.get_running_loop()
        self._dedup: Dedup[Msg] = Dedup(cfg.dedup)
        self._verdicts: deque[tuple[str, bool]] = deque()
        self._verdict_ready = anyio.Event()
        self._unhandled: deque[Msg] = deque()
        self._held: list[_Held] | None = None
        self._hold_until = 0.0
        self._election: Election | None = None
        self.received = 0
        self.skipped = 0
        self.dead_lettered = 0
        self._nc: Client | None = None
        self._nc = await connect(cfg, "source", self.context.name, self.log)
        self._js: JetStreamContext = self._nc.jetstream()
        await ensure_stream(self._js, cfg, cfg.subject, "source", self.context.name, self.log)
        await self._ensure_consumer()
        self._sub = await self._js.pull_subscribe_bind(durable=cfg.durable, stream=cfg.stream)
        if cfg.leader:
            self._election = Election(
                self._js,
                cfg.leader_bucket,
                cfg.leader,
                self.instance,
                cfg.leader_ttl,
                self.log,
                self._where,
                on_change=self._leadership_changed,
            )
            await self._election.open()

    async def _ensure_consumer(self) -> None:
        cfg = self.config
        wanted = api.ConsumerConfig(
            durable_name=cfg.durable,
            name=cfg.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=cfg.ack_wait,
            max_ack_pending=cfg.max_ack_pending,
            filter_subject=cfg.subject,
            deliver_policy=api.DeliverPolicy.ALL,
            max_deliver=-1,
        )
        try:
            info = await self._js.consumer_info(cfg.stream, cfg.durable)
        except nats.js.errors.NotFoundError:
            await self._js.add_consumer(cfg.stream, wanted)
            self.log.info(
                "%s: created durable consumer %r on stream %r (filter %r)",
                self._where,
                cfg.durable,
                cfg.stream,
                cfg.subject,
            )
            return
        have = info.config
        if have.filter_subject != cfg.subject:
            raise ConsumerError(
                f"{self._where}: durable consumer {cfg.durable!r} on stream {cfg.stream!r} "
                f"filters {have.filter_subject!r}, not `subject` {cfg.subject!r}; use another "
                "`durable` for another subject, or delete the consumer"
            )
        if have.ack_wait != cfg.ack_wait or have.max_ack_pending != cfg.max_ack_pending:
            try:
                await self._js.add_consumer(cfg.stream, wanted)
            except nats.js.errors.APIError as exc:
                self.log.warning(
                    "%s: consumer %r keeps ack_wait %ss / max_ack_pending %s (update refused: %s)",
                    self._where,
                    cfg.durable,
                    have.ack_wait,
                    have.max_ack_pending,
                    exc,
                )

    # -- verdicts -----------------------------------------------------------------------

    def _callback(self, msg_id: str) -> AckCallback:
        loop = self._loop

        def verdict(ok: bool) -> None:
            # A closed loop raises: the server redelivers after ack_wait then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._verdict, msg_id, ok)

        return verdict

    def _verdict(self, msg_id: str, ok: bool) -> None:
        self._verdicts.append((msg_id, ok))
        self._verdict_ready.set()

    async def _settle(self) -> None:
        """Ack or nak the deliveries of every verdict that came back."""
        self._verdict_ready = anyio.Event()
        while self._verdicts:
            msg_id, ok = self._verdicts.popleft()
            if ok:
                for m in self._dedup.finish(msg_id):
                    await self._reply(m, "ack")
            else:
                for m in self._dedup.forget(msg_id):
                    await self._reply(m, "nak")

    async def _reply(self, msg: Msg, what: str) -> None:
        try:
            if what == "ack":
                await msg.ack()
            elif what == "nak":
                await msg.nak(delay=NAK_DELAY)
            elif what == "term":
                await msg.term()
            else:
                await msg.in_progress()
        except nats.errors.MsgAlreadyAckdError:
            pass
        except nats.errors.Error as exc:
            # The id is done (or forgotten) anyway: a redelivery is acked (or processed)
            # then, so a lost reply costs at most one redelivery.
            self.log.debug("%s: %s failed: %r", self._where, what, exc)

    async def _acker(self) -> None:
        while True:
            await self._verdict_ready.wait()
            await self._settle()

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.config.ack_wait / 3)
            for m in self._dedup.pending_messages():
                await self._reply(m, "progress")

    # -- fetching -----------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._acker)
            tg.start_soon(self._heartbeat)
            if self._election is not None:
                tg.start_soon(self._election.run)
            await self._fetch_loop(emit)

    async def _fetch_loop(self, emit: Emit) -> None:
        election = self._election
        while True:
            # The fetch below is shielded: this is where a drain's cancellation lands.
            await anyio.lowlevel.checkpoint()
            if election is not None and not election.is_leader:
                with anyio.move_on_after(FETCH_WAIT):
                    await election.changed.wait()
                continue
            msgs = await self._fetch()
            self._unhandled.extend(msgs)
            while self._unhandled:
                await self._handle(self._unhandled.popleft(), emit)
            if self._held is not None and time.monotonic() >= self._hold_until:
                await self._release_held(emit)

    async def _fetch(self) -> list[Msg]:
        # Shielded: what the server hands over must reach _unhandled, or it would wait
        # for ack_wait before anyone else gets it; a fetch ends within FETCH_WAIT.
        msgs: list[Msg] = []
        with anyio.CancelScope(shield=True):
            try:
                msgs = await self._sub.fetch(self.config.fetch_batch, timeout=FETCH_WAIT)
            except nats.errors.TimeoutError:
                pass
            except (nats.errors.Error, OSError) as exc:
                self.log.debug("%s: fetch failed: %r", self._where, exc)
                await anyio.sleep(RETRY_WAIT)
        return msgs

    def message_id(self, msg: Msg) -> tuple[str, int]:
        seq = msg.metadata.sequence.stream
        msg_id = (msg.headers or {}).get(MSG_ID) or f"{self.config.stream}:{seq}"
        return msg_id, seq

    async def _handle(self, msg: Msg, emit: Emit) -> None:
        msg_id, seq = self.message_id(msg)
        self.received += 1
        state = self._dedup.state(msg_id)
        if state is State.DONE:
            self.skipped += 1
            await self._reply(msg, "ack")
            return
        if state is State.PENDING:
            self.skipped += 1
            self._dedup.hold(msg_id, seq, msg)
            return
        try:
            decoded = decode_batch(msg.data)
        except WireError as exc:
            self._dead_letter(msg, msg_id, seq, exc)
            await self._reply(msg, "term")
            return
        if not len(decoded):
            self._dedup.mark_done(msg_id)
            await self._reply(msg, "ack")
            return
        self._dedup.hold(msg_id, seq, msg)
        ack = Ack(self._callback(msg_id))
        if self._held is not None:
            self._held.append(_Held(decoded.metrics, decoded.events, ack))
            return
        await emit(Batch(decoded.metrics, decoded.events, origin=msg_id, acks=(ack,)))

    def _dead_letter(self, msg: Msg, msg_id: str, seq: int, exc: WireError) -> None:
        self.context.stats.errors += 1
        self.context.stats.dead_lettered += 1
        self.dead_lettered += 1
        self.context.stats.last_error = str(exc)
        path = self.context.data_dir / "dead_letter" / f"{self.context.name}.nats.jsonl"
        self.log.error(
            "%s: message %r (subject %r, stream sequence %d) is not a revopipe batch: %s; "
            "terminated (not redelivered), payload kept in %s",
            self._where,
            msg_id,
            msg.subject,
            seq,
            exc,
            path,
        )
        record = {
            "dead_letter_at": time.time(),
            "component": self.context.name,
            "subject": msg.subject,
            "stream": self.config.stream,
            "stream_seq": seq,
            "msg_id": msg_id,
            "error": str(exc),
            "payload_b64": base64.b64encode(msg.data).decode("ascii"),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            self.log.error("%s: cannot write the dead letter file %s: %s", self._where, path, err)

    # -- leadership ---------------------------------------------------------------------

    def _leadership_changed(self, leader: bool) -> None:
        if leader:
            self._held = []
            self._hold_until = time.monotonic() + self.config.takeover
        else:
            self._drop_held()

    def _drop_held(self) -> None:
        """Give back what was held and never emitted: nak'ed, for whoever leads now."""
        held, self._held = self._held, None
        for h in held or ():
            h.ack.release(False)

    async def _release_held(self, emit: Emit) -> None:
        held, self._held = self._held, None
        if not held:
            return
        batch = Batch(
            MetricBatch.concat(h.metrics for h in held),
            tuple(e for h in held for e in h.events),
            acks=tuple(h.ack for h in held),
        )
        self.log.info(
            "%s: takeover hold over, emitting %d held messages as one batch",
            self._where,
            len(held),
        )
        await emit(batch)

    # -- stopping -----------------------------------------------------------------------

    async def stop(self) -> None:
        nc = getattr(self, "_nc", None)
        if nc is None:
            return
        try:
            if self._election is not None:
                await self._election.resign()
            self._drop_held()
            # Fetched but never emitted (the drain came first): back to the server now.
            while self._unhandled:
                await self._reply(self._unhandled.popleft(), "nak")
            await self._await_verdicts()
        finally:
            await close(nc)

    async def _await_verdicts(self) -> None:
        """Ack what the draining pipeline accepts, for at most ack_timeout."""
        await self._settle()
        if not self._dedup.pending:
            return
        with anyio.move_on_after(self.config.ack_timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat)
                while self._dedup.pending:
                    with anyio.move_on_after(FETCH_WAIT):
                        await self._verdict_ready.wait()
                    await self._settle()
                tg.cancel_scope.cancel()
        if self._dedup.pending:
            self.log.warning(
                "%s: %d messages not accepted downstream within ack_timeout (%ss); the "
                "server redelivers them after ack_wait",
                self._where,
                self._dedup.pending,
                self.config.ack_timeout,
            )

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        if action != "status":
            return await super().control(action, params)
        dedup = getattr(self, "_dedup", None)
        election = getattr(self, "_election", None)
        return {
            "leader": None if election is None else election.is_leader,
            "pending": dedup.pending if dedup is not None else 0,
            "done": dedup.done if dedup is not None else 0,
            "instance": getattr(self, "instance", self.config.instance),
        }
