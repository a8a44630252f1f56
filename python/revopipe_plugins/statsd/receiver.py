"""The UDP side of the `statsd` source: a socket, and a reader that only collects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from revopipe import _core

# Seconds the socket goes unwatched after a read of fewer than BUSY_READ datagrams (see
# Receiver._readable).
READ_PAUSE = 0.001
BUSY_READ = 32

# Linux reports SO_RCVBUF doubled (the kernel's bookkeeping share included).
_RCVBUF_REPORT_FACTOR = 2


class Receiver:
    """Collects datagrams on the event loop, parsing nothing. Each time the socket is
    readable it is drained in one Rust call (GIL released), so the loop pays one turn per
    wakeup, not one per datagram. Past `max_pending` bytes waiting (downstream too slow to
    take them), datagrams are read and dropped, and counted, rather than held without
    bound."""

    def __init__(
        self, sock: socket.socket, max_pending: int, wake_at: int, wake: Callable[[], None]
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.chunks: list[bytes] = []
        self.pending = 0
        self.datagrams = 0
        self.dropped = 0
        self.read_errors = 0
        self.max_pending = max_pending
        self.wake_at = wake_at
        self.wake = wake
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rearm: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        if self.read() >= BUSY_READ:
            return  # busy: reads are large already, and the kernel's buffer is needed
        # A trickle: not watched again for a moment, so the datagrams of the next
        # millisecond wait in the kernel and come in one read, not a loop turn each.
        loop = self._loop
        if loop is not None:
            loop.remove_reader(self.fd)
            self._rearm = loop.call_later(READ_PAUSE, self._watch)

    def _watch(self) -> None:
        if self._loop is not None:
            self._loop.add_reader(self.fd, self._readable)

    def read(self) -> int:
        """Reads what is queued (a bounded amount); the datagrams read."""
        room = self.max_pending - self.pending
        try:
            if room <= 0:
                n = _core.discard_datagrams(self.fd)
                self.dropped += n
                return n
            data, n = _core.read_datagrams(self.fd, room)
        except OSError as exc:
            # Reading consumed the error; the next wakeup reads on.
            self.read_errors += 1
            logging.getLogger(__name__).debug("statsd socket read failed: %r", exc)
            return 0
        if n:
            self.chunks.append(data)  # each datagram already ends in a newline
            self.pending += len(data)
            self.datagrams += n
            if self.pending >= self.wake_at:
                self.wake()
        return n

    def read_queued(self) -> None:
        """Reads what the kernel still holds, without waiting for the event loop to get to
        it: at a drain, datagrams already queued were received too. Bounded, so a sender
        that never pauses cannot keep a drain here."""
        for _ in range(64):
            if not self.read():
                return

    def take(self) -> bytes:
        """The datagrams collected so far, as one buffer of lines."""
        chunks, self.chunks = self.chunks, []
        self.pending = 0
        return b"".join(chunks)

    def close(self) -> None:
        if self._rearm is not None:
            self._rearm.cancel()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.fd)
        self._loop = None
        self.sock.close()


def open_socket(
    host: str, port: int, receive_buffer: int, log: logging.Logger, name: str
) -> socket.socket:
    """A bound, non-blocking UDP socket with the receive buffer asked for (as far as the
    kernel grants it; a shortfall is logged with the fix)."""
    try:
        # an empty host (':8125') with AI_PASSIVE is the wildcard address
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise OSError(
            f"statsd source {name!r}: cannot resolve address host {host!r} ({exc}); "
            "set 'address' to an IP address or a resolvable name"
        ) from exc
    family, _, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        if receive_buffer:
            _set_receive_buffer(sock, receive_buffer, log, name)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise OSError(
            f"statsd source {name!r}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "set 'address' to a free host:port"
        ) from exc
    sock.setblocking(False)
    return sock


def receive_buffer_size(sock: socket.socket) -> int:
    """The receive buffer the kernel grants, in the bytes one would ask for."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // _RCVBUF_REPORT_FACTOR


def _set_receive_buffer(sock: socket.socket, size: int, log: logging.Logger, name: str) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    if receive_buffer_size(sock) >= size:
        return
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None:
        # Allowed past net.core.rmem_max only with CAP_NET_ADMIN; harmless to try.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, force, size)
    granted = receive_buffer_size(sock)
    if granted < size:
        log.warning(
            "statsd source %r: receive_buffer %d bytes asked, the kernel granted %d; bursts "
            "past that are dropped by the kernel. Raise the limit with "
            "`sysctl -w net.core.rmem_max=%d` or lower 'receive_buffer'",
            name,
            size,
            granted,
            size,
        )
