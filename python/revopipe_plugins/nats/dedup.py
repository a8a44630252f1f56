"""Which message ids a source has finished with, and which it is still holding.

JetStream delivers at least once: a message is redelivered when its ack was lost, when
ack_wait passed, or when a publisher re-sent it after the stream's duplicate window. A
source remembers the ids it acknowledged ("done": a redelivery is acked again and
skipped) and the ids whose data is still in the pipeline ("pending": a redelivery is
skipped, but its newest delivery is kept so the final ack or nak reaches the server for
every stream sequence carrying that id).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")


class State(Enum):
    NEW = "new"
    PENDING = "pending"
    DONE = "done"


class Dedup(Generic[T]):
    """A bounded LRU of done ids plus the pending ids, each with its deliveries keyed by
    stream sequence (a redelivery of the same sequence replaces the older delivery)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._done: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, dict[int, T]] = {}

    def state(self, msg_id: str) -> State:
        if msg_id in self._pending:
            return State.PENDING
        if msg_id in self._done:
            self._done.move_to_end(msg_id)
            return State.DONE
        return State.NEW

    def hold(self, msg_id: str, seq: int, msg: T) -> None:
        """Remember a delivery of `msg_id` whose data is (or will be) in the pipeline."""
        self._pending.setdefault(msg_id, {})[seq] = msg

    def finish(self, msg_id: str) -> list[T]:
        """The pipeline accepted `msg_id`: it is done; its deliveries, to acknowledge."""
        msgs = self._pending.pop(msg_id, {})
        self.mark_done(msg_id)
        return list(msgs.values())

    def forget(self, msg_id: str) -> list[T]:
        """The pipeline dropped `msg_id`: neither pending nor done (a redelivery is
        processed again); its deliveries, to nak."""
        return list(self._pending.pop(msg_id, {}).values())

    def mark_done(self, msg_id: str) -> None:
        if self.capacity <= 0:
            return
        self._done[msg_id] = None
        self._done.move_to_end(msg_id)
        while len(self._done) > self.capacity:
            self._done.popitem(last=False)

    def pending_messages(self) -> Iterator[T]:
        """Every delivery still held (a snapshot: safe while the holdings change)."""
        for msgs in list(self._pending.values()):
            yield from list(msgs.values())

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def done(self) -> int:
        return len(self._done)
