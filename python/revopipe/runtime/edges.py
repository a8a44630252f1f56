"""Edges between components: bounded anyio memory streams with a `when_full` policy."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from revopipe.acks import release_all, retain_all
from revopipe.batch import Batch
from revopipe.config.schema import WhenFull
from revopipe.runtime.stats import ComponentStats


class Space:
    """Wakes producers blocked on a full inbox when its consumer takes a batch.

    Producers never wait inside the memory stream's `send()`: a send cancelled there may
    already have handed its batch to the receiver, and the producer cannot tell, so a
    drain or a timeout would miscount (or an HTTP client would be told to resend what was
    taken). Instead they wait here and then `send_nowait()`, which either delivers or
    raises, with no await in between.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def notify(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()


@dataclass(slots=True)
class Edge:
    """One producer's handle on one consumer's input stream."""

    send: MemoryObjectSendStream[Batch]
    when_full: WhenFull
    consumer: ComponentStats
    space: Space


@dataclass(slots=True)
class Outputs:
    """A producer's edges. `emit` fans a batch out to all of them."""

    stats: ComponentStats
    edges: list[Edge] = field(default_factory=list)

    async def emit(self, batch: Batch) -> None:
        n = len(batch)
        if n == 0 or not self.edges:
            # nothing to deliver, or nobody downstream: accepted as far as this branch goes
            release_all(batch.acks)
            if n == 0:
                return
        if len(self.edges) == 1:
            blocked = await self._send(self.edges[0], batch, n)
        else:
            # Every branch must accept the batch before its upstream delivery is acked.
            retain_all(batch.acks, len(self.edges) - 1)
            # Shielded: once a batch is accepted for one consumer it is delivered to all,
            # so a drain never leaves one branch of a fan-out without a batch another has.
            blocked = False
            with anyio.CancelScope(shield=True):
                for edge in self.edges:
                    blocked = await self._send(edge, batch, n) or blocked
        # Counted before any further await: a cancellation from here on cannot make a
        # delivered batch go uncounted.
        self.stats.events_out += n
        self.stats.batches_out += 1
        if not blocked:
            # No send awaited (no consumers, or drop_newest had room): still give the loop
            # a turn so a busy source cannot starve its consumers or miss a stop.
            await anyio.lowlevel.checkpoint()

    @staticmethod
    async def _send(edge: Edge, batch: Batch, n: int) -> bool:
        """Deliver to one edge; True if it awaited (and so yielded to the loop). A batch
        the edge drops releases its acks as not accepted, so the source can redeliver."""
        awaited = False
        try:
            while True:
                try:
                    edge.send.send_nowait(batch)
                    return awaited
                except anyio.WouldBlock:
                    if edge.when_full != "block":
                        edge.consumer.dropped += n
                        release_all(batch.acks, ok=False)
                        return awaited
                # Cancelled here, nothing was delivered: see `Space`.
                try:
                    await edge.space.wait()
                except BaseException:
                    release_all(batch.acks, ok=False)
                    raise
                awaited = True
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The consumer is gone (forced stop): count what it will never see.
            edge.consumer.dropped += n
            release_all(batch.acks, ok=False)
        return awaited

    async def aclose(self) -> None:
        for edge in self.edges:
            await edge.send.aclose()


@dataclass(slots=True)
class Inbox:
    """A consumer's input: one stream that every upstream edge feeds (fan-in)."""

    send: MemoryObjectSendStream[Batch]
    receive: MemoryObjectReceiveStream[Batch]
    when_full: WhenFull
    space: Space = field(default_factory=Space)
    """The consumer calls `space.notify()` after each batch it takes (and once closed)."""

    @classmethod
    def create(cls, buffer: int, when_full: WhenFull) -> Inbox:
        send, receive = anyio.create_memory_object_stream[Batch](buffer)
        return cls(send, receive, when_full)

    def edge_for(self, consumer: ComponentStats) -> Edge:
        return Edge(self.send.clone(), self.when_full, consumer, self.space)
