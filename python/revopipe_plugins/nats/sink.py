"""The `nats` sink: each batch becomes one JetStream message (revopipe.wire.batch).

The message id (header Nats-Msg-Id) is the batch's origin, or `<origin>-<batch id>` for a
batch without one, so the stream's duplicate window drops a re-publish of the same batch
(after a lost PubAck, or a redelivery upstream). A write returns once the stream stored the
message. While nats-server is unreachable, or JetStream does not answer, the write retries
with the SAME id, with exponential backoff, for as long as the component runs: the write
blocks, the sink's inbox fills and upstream waits (an agent buffers through a server
restart rather than dead-lettering). Errors no retry can fix (a message larger than the
server's max_payload, a refused publish) raise, and the runtime retries then dead-letters.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from revopipe.batch import Batch
from revopipe.components import ControlMode, Sink
from revopipe.tuning import Tunable
from revopipe.wire.batch import encode_batch
from revopipe_plugins.nats.config import NatsSinkConfig
from revopipe_plugins.nats.connection import close, connect
from revopipe_plugins.nats.stream import ensure_stream

# A failing write logs a warning at its first failure and then at most this often.
LOG_INTERVAL = 30.0

_RETRYABLE: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    TimeoutError,
    OSError,
)


class NatsPublishError(RuntimeError):
    """A publish no retry can fix; the runtime retries the batch, then dead-letters it."""


def default_origin() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class NatsSink(Sink[NatsSinkConfig]):
    type_name = "nats"
    Config = NatsSinkConfig
    description = "publishes batches to NATS JetStream (deduplicated by message id)"
    # Merging queued batches would merge their message ids: batch_max stays 1.
    tunables: ClassVar[Mapping[str, Tunable]] = {}
    control_actions: ClassVar[Mapping[str, ControlMode]] = {"status": "read"}

    published = 0
    """Messages the stream stored (duplicates included)."""
    published_bytes = 0
    duplicates = 0
    """Publishes the stream dropped as already stored (a retry after a lost PubAck)."""

    async def start(self) -> None:
        cfg = self.config
        self._origin = cfg.origin or default_origin()
        self._nc: Client | None = None
        self._nc = await connect(cfg, "sink", self.context.name, self.log)
        self._js: JetStreamContext = self._nc.jetstream(timeout=cfg.timeout)
        await ensure_stream(self._js, cfg, cfg.subject, "sink", self.context.name, self.log)
        self._max_payload = self._nc.max_payload

    async def stop(self) -> None:
        nc = getattr(self, "_nc", None)
        if nc is not None:
            await close(nc)
        if self.published:
            self.log.info(
                "nats sink %r: published %d messages, %d bytes (%d duplicates dropped by the "
                "stream)",
                self.context.name,
                self.published,
                self.published_bytes,
                self.duplicates,
            )

    def message_id(self, batch: Batch) -> str:
        return batch.origin or f"{self._origin}-{batch.id}"

    async def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        cfg = self.config
        data = encode_batch(batch)
        msg_id = self.message_id(batch)
        if len(data) > self._max_payload:
            raise NatsPublishError(
                f"nats sink {self.context.name!r}: batch {msg_id!r} encodes to {len(data)} "
                f"bytes, more than the server's max_payload of {self._max_payload}; send "
                "smaller batches upstream or raise max_payload in nats-server's config"
            )
        headers = {"Nats-Msg-Id": msg_id}
        attempt = 0
        first_failure = 0.0
        last_log = -LOG_INTERVAL
        while True:
            reason = ""
            nc = self._nc
            if nc is None or not nc.is_connected:
                reason = "not connected to NATS"
            else:
                try:
                    ack = await self._js.publish(
                        cfg.subject, data, timeout=cfg.timeout, headers=headers
                    )
                except nats.js.errors.NoStreamResponseError as exc:
                    reason = f"no answer from stream {cfg.stream!r} ({exc})"
                    await self._recreate_stream()
                except _RETRYABLE as exc:
                    reason = f"{type(exc).__name__}: {exc or 'no detail'}"
                except nats.js.errors.APIError as exc:
                    raise NatsPublishError(
                        f"nats sink {self.context.name!r}: stream {cfg.stream!r} refused "
                        f"batch {msg_id!r} on {cfg.subject!r}: {exc}; check the stream's "
                        "limits and `subject`"
                    ) from exc
                else:
                    self._count(len(data), bool(ack.duplicate))
                    if attempt:
                        self.log.info(
                            "nats sink %r: published %r after %d retries (%.1fs)",
                            self.context.name,
                            msg_id,
                            attempt,
                            time.monotonic() - first_failure,
                        )
                    return
            now = time.monotonic()
            if not attempt:
                first_failure = now
            if now - last_log >= LOG_INTERVAL:
                last_log = now
                self.log.warning(
                    "nats sink %r: publish of %r not confirmed (%s); retrying with the same "
                    "id until it is (upstream waits meanwhile)",
                    self.context.name,
                    msg_id,
                    reason,
                )
            delay = min(cfg.retry_initial * 2**attempt, cfg.retry_max)
            attempt += 1
            self.context.stats.retries += 1
            await anyio.sleep(delay)

    async def _recreate_stream(self) -> None:
        # A memory stream is gone after a server restart: put it back so publishing can
        # resume (no-op, or an error logged at debug, when it exists or cannot be made).
        if not self.config.create_stream:
            return
        try:
            await ensure_stream(
                self._js, self.config, self.config.subject, "sink", self.context.name, self.log
            )
        except Exception as exc:
            self.log.debug("nats sink %r: stream check failed: %s", self.context.name, exc)

    def _count(self, size: int, duplicate: bool) -> None:
        self.published += 1
        self.published_bytes += size
        if duplicate:
            self.duplicates += 1

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        if action != "status":
            return await super().control(action, params)
        nc = getattr(self, "_nc", None)
        return {
            "connected": bool(nc is not None and nc.is_connected),
            "published": self.published,
            "published_bytes": self.published_bytes,
            "duplicates": self.duplicates,
            "origin": getattr(self, "_origin", ""),
        }
