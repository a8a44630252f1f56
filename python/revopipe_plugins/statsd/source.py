"""Receives StatsD / DogStatsD datagrams over UDP and emits them as metric batches.

Datagrams are only collected on the event loop (see `receiver`); every `flush_interval`
(or sooner, once `max_batch_bytes` are waiting) they are parsed by the Rust core in one
call, in a worker thread with the GIL released, and the rows leave as one columnar batch.
"""

from __future__ import annotations

import math
import time
from array import array
from dataclasses import dataclass

import anyio
import anyio.to_thread
from pydantic import Field

from revopipe import _core
from revopipe.batch import Batch, MetricBatch
from revopipe.components import Emit, Source
from revopipe.config import Duration, Size, SourceConfig
from revopipe.config.address import Address, parse_address
from revopipe.events import now_ns
from revopipe_plugins.statsd.receiver import Receiver, open_socket

# Datagrams wait for at most this many batches' worth of bytes; past it they are dropped
# (and counted) rather than held without bound while downstream is slow.
BACKLOG_BATCHES = 8
# Malformed-line warnings are logged at most this often (seconds).
LOG_INTERVAL = 10.0


class StatsdConfig(SourceConfig):
    address: Address = Field(
        default="127.0.0.1:8125",
        description="UDP host:port to listen on; '0.0.0.0:8125' for every IPv4 interface, "
        "'[::1]:8125' for IPv6",
    )
    flush_interval: Duration = Field(
        default=0.1, gt=0, description="how often received datagrams are parsed and emitted"
    )
    max_batch_bytes: Size = Field(
        default=2**20,
        ge=1,
        description="parse as soon as this many bytes of datagrams are waiting",
    )
    receive_buffer: Size = Field(
        default=4 * 2**20,
        ge=0,
        description="socket receive buffer (SO_RCVBUF) absorbing bursts; 0 keeps the OS default",
    )
    max_series: int = Field(
        default=100_000,
        ge=1,
        description="series tracked (counter totals, gauge values); lines of further series "
        "are dropped and counted",
    )


@dataclass(slots=True)
class _Skipped:
    """Line counts not yet logged."""

    malformed: int = 0
    unsupported: int = 0
    overflow: int = 0
    backlog: int = 0

    def __bool__(self) -> bool:
        return bool(self.malformed or self.unsupported or self.overflow or self.backlog)


class StatsdSource(Source[StatsdConfig]):
    type_name = "statsd"
    Config = StatsdConfig
    description = "StatsD / DogStatsD metrics over UDP (parsed in Rust)"

    bound_address: tuple[str, int] | None = None
    """The (host, port) listened on, once started: the real port when 'address' gave 0."""

    async def start(self) -> None:
        cfg = self.config
        self._parser = _core.StatsdParser(max_series=cfg.max_series)
        self._wake = anyio.Event()
        self._unsent: MetricBatch | None = None
        # Counts already added to the component's stats, and those not yet logged.
        self._counted = (0, 0, 0, 0, 0, 0)
        self._skipped = _Skipped()
        self._examples: list[str] = []
        self._last_log = -math.inf
        host, port = parse_address(cfg.address, "127.0.0.1:8125")
        sock = open_socket(host, port, cfg.receive_buffer, self.log, self.context.name)
        self.bound_address = sock.getsockname()[:2]
        self._receiver = Receiver(
            sock,
            max_pending=cfg.max_batch_bytes * BACKLOG_BATCHES,
            wake_at=cfg.max_batch_bytes,
            wake=self._wake_now,
        )
        self._receiver.start()

    def _wake_now(self) -> None:
        self._wake.set()

    @property
    def received_datagrams(self) -> int:
        """Datagrams accepted so far (not counting those dropped for a full backlog)."""
        return self._receiver.datagrams

    async def run(self, emit: Emit) -> None:
        try:
            while True:
                with anyio.move_on_after(self.config.flush_interval):
                    await self._wake.wait()
                self._wake = anyio.Event()
                await self._flush(emit)
        finally:
            # On drain, what was already received (the kernel's queue included) is parsed
            # and emitted; bounded, so a forced stop cannot hang here.
            self._receiver.read_queued()
            with anyio.move_on_after(5, shield=True):
                await self._flush(emit)

    async def _flush(self, emit: Emit) -> None:
        if self._unsent is not None:
            await self._send(emit)  # left over from an emit that was cancelled
        data = self._receiver.take()
        if data:
            now = now_ns()
            # Shielded: once taken from the receiver the data must come out as a batch.
            with anyio.CancelScope(shield=True):
                self._unsent = await anyio.to_thread.run_sync(self._parse, data, now)
        self._account()
        if self._unsent is not None:
            await self._send(emit)

    async def _send(self, emit: Emit) -> None:
        batch = self._unsent
        if batch is not None and len(batch):
            # Cancelled while waiting here, the batch stays in _unsent for the drain.
            await emit(Batch(batch))
        self._unsent = None

    def _parse(self, data: bytes, now: int) -> MetricBatch:
        names, kinds, values, units, timestamps, tags = self._parser.parse(data, now)
        v = array("d")
        v.frombytes(values)
        t = array("q")
        t.frombytes(timestamps)
        return MetricBatch(names, kinds, v, units, t, tags)

    def _account(self) -> None:
        """Moves the parser's and receiver's counts into the component's stats, and logs
        skipped lines (rate-limited, with an example)."""
        p, stats = self._parser, self.context.stats
        r = self._receiver
        now = (
            p.lines,
            p.malformed_lines,
            p.unsupported_lines,
            p.overflow_lines,
            r.dropped,
            r.read_errors,
        )
        lines, malformed, unsupported, overflow, backlog, read_errors = (
            a - b for a, b in zip(now, self._counted, strict=True)
        )
        self._counted = now
        stats.events_in += lines
        stats.errors += malformed + read_errors
        stats.dropped += unsupported + overflow + backlog
        s = self._skipped
        s.malformed += malformed
        s.unsupported += unsupported
        s.overflow += overflow
        s.backlog += backlog
        errors = p.take_errors()
        if errors:
            stats.last_error = f"malformed StatsD line: {errors[0]}"
            if not self._examples:
                self._examples = errors
        if s and time.monotonic() - self._last_log >= LOG_INTERVAL:
            self._log_skipped()

    def _log_skipped(self) -> None:
        s, name = self._skipped, self.context.name
        if s.malformed:
            example = self._examples[0] if self._examples else "no example kept"
            self.log.warning(
                "statsd source %r: skipped %d malformed line(s), e.g. %s",
                name,
                s.malformed,
                example,
            )
        if s.unsupported:
            self.log.info(
                "statsd source %r: skipped %d DogStatsD event / service check line(s) "
                "(not supported; only metrics are read)",
                name,
                s.unsupported,
            )
        if s.overflow:
            self.log.warning(
                "statsd source %r: dropped %d line(s) of new series: max_series=%d series are "
                "tracked already; raise 'max_series' or reduce tag cardinality",
                name,
                s.overflow,
                self.config.max_series,
            )
        if s.backlog:
            self.log.warning(
                "statsd source %r: dropped %d datagram(s): %d bytes were waiting for a slow "
                "downstream; raise 'max_batch_bytes' or speed up the consumers",
                name,
                s.backlog,
                self._receiver.max_pending,
            )
        self._skipped = _Skipped()
        self._examples = []
        self._last_log = time.monotonic()

    async def stop(self) -> None:
        receiver = getattr(self, "_receiver", None)  # absent when start() failed
        if receiver is not None:
            receiver.close()
