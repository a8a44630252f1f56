"""End-to-end acknowledgements: a source learns when what it emitted has been accepted.

A source that reads from a system with redelivery (a message bus) must not acknowledge a
message when it has merely emitted it: a crash before the sinks wrote it would lose it.
It attaches an `Ack` to the batch instead. The runtime carries the ack along the DAG —
retained once per extra branch of a fan-out, moved onto a processor's output, held by a
processor that keeps data in a window (`Processor.holds_acks`) — and releases it when a
sink has written the batch (or dead-lettered it to disk). When the last holder released
it, the source's callback runs once with the verdict: True if every branch accepted the
data, False if any branch dropped it (a full `drop_newest` edge, a consumer gone in a
forced stop). An ack that every holder forgot without releasing (a processor instance
lost with its window) reports False when it is garbage-collected, so the source can ask
for a redelivery at once rather than wait for a timeout.

Callbacks may run on any thread (garbage collection); a source's callback should only
hand the verdict to its own loop (`loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

AckCallback = Callable[[bool], None]


class Ack:
    """One upstream delivery waiting for the pipeline's verdict."""

    __slots__ = ("__weakref__", "_callback", "_ok", "_pending")

    def __init__(self, callback: AckCallback) -> None:
        self._callback: AckCallback | None = callback
        self._pending = 1
        self._ok = True

    @property
    def done(self) -> bool:
        return self._callback is None

    @property
    def pending(self) -> int:
        """Holders that have not released it yet."""
        return self._pending

    def retain(self, n: int = 1) -> None:
        """`n` more holders (the extra branches of a fan-out) must release it."""
        if self._callback is not None:
            self._pending += n

    def release(self, ok: bool = True) -> None:
        """One holder is done with it: `ok` if the data was accepted on its branch."""
        callback = self._callback
        if callback is None:
            return
        self._ok = self._ok and ok
        self._pending -= 1
        if self._pending <= 0:
            self._callback = None
            callback(self._ok)

    def __del__(self) -> None:
        # Forgotten by every holder without a verdict: the data it stands for was lost
        # in this process (e.g. with a restarted processor's window), so ask again.
        callback, self._callback = self._callback, None
        if callback is not None:
            with contextlib.suppress(Exception):  # a finalizer must not raise
                callback(False)


def retain_all(acks: Iterable[Ack], n: int = 1) -> None:
    for a in acks:
        a.retain(n)


def release_all(acks: Iterable[Ack], ok: bool = True) -> None:
    for a in acks:
        a.release(ok)
