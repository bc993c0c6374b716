"""Deadlines for slow clients on the werkzeug strategies (``dev``, ``threaded``, ``processes``).

A limit on silence ("no byte for 10 s") does not stop a client that sends one byte
every few seconds, and on ``dev`` such a client holds the only request slot. These are
the deadlines of the gunicorn strategies (``servekit.backends.gunicorn.workers.limits``),
kept by the connection's reader and writer:

* the request head must be complete ``header_timeout`` seconds after the handler took
  the connection; a late head gets ``408`` when part of it arrived (a quiet close when
  nothing did);
* a request body must come at ``body_min_rate`` bytes/s on average, counted over the time
  spent waiting on the client once that time passes ``header_timeout`` (the grace), and no
  single wait for body bytes may exceed ``header_timeout``;
* each write of a response must be taken by the client within :data:`WRITE_TIMEOUT_SECONDS`
  (the werkzeug strategies have no ``timeout`` option; this is the silence limit they had).

``max_body_size`` is the handler's (:mod:`.handler`, :mod:`.body`). The socket stays in
Python's timeout mode, as werkzeug's handler already had it, with a short wait (the
quantum) instead of 10 s: a read or write that waits longer comes back, the deadlines are
looked at, and it waits again. A read that gets bytes at once costs what it cost before
(no system call more); the deadlines are checked with the monotonic clock only.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass
from typing import Any

from servekit.logs import get_logger

__all__ = [
    "REPLY_408",
    "WRITE_TIMEOUT_SECONDS",
    "Cut",
    "Limits",
    "Pace",
    "PacedReader",
    "PacedWriter",
    "client_limits",
    "peer_text",
]

REPLY_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
#: how long the client may take to accept each write of a response
WRITE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Limits:
    """The client limits of a werkzeug server, as the options set them (0: that limit is off)."""

    header_timeout: float = 10.0
    body_min_rate: int = 1024
    max_body_size: int = 1 << 30
    write_timeout: float = WRITE_TIMEOUT_SECONDS

    @property
    def quantum(self) -> float:
        """How long one wait on the client lasts before the deadlines are looked at again:
        their precision (a quarter of the shortest one, at most 1 s)."""
        spans = [self.header_timeout, 4.0]
        if self.write_timeout > 0:
            spans.append(self.write_timeout)
        return max(0.01, min(spans) / 4)


def client_limits(cfg: Any) -> Limits:
    """The :class:`Limits` of a resolved werkzeug config (an option left unset: its default)."""
    default = Limits()
    header_timeout = getattr(cfg, "header_timeout", None)
    body_min_rate = getattr(cfg, "body_min_rate", None)
    max_body_size = getattr(cfg, "max_body_size", None)
    return Limits(
        header_timeout=default.header_timeout if header_timeout is None else float(header_timeout),
        body_min_rate=default.body_min_rate if body_min_rate is None else int(body_min_rate),
        max_body_size=default.max_body_size if max_body_size is None else int(max_body_size),
    )


class Cut(ConnectionError):
    """A client missed a deadline: its connection was shut (nobody to answer any more)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def peer_text(peer: Any) -> str:
    """``HOST:PORT`` of a client address (a unix socket peer has none)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "unix socket")


class Pace:
    """The deadlines of one client connection. :class:`PacedReader` calls
    :meth:`after_read` after every read and every wait that came back empty; the handler
    calls :meth:`start_body` once the head is parsed."""

    __slots__ = (
        "body_bytes",
        "body_wait",
        "head_bytes",
        "head_deadline",
        "in_body",
        "limits",
        "peer",
    )

    def __init__(self, limits: Limits, peer: Any, now: float | None = None) -> None:
        self.limits = limits
        self.peer = peer
        self.in_body = False
        self.head_bytes = 0
        self.body_bytes = 0
        self.body_wait = 0.0
        self.head_deadline = (time.monotonic() if now is None else now) + limits.header_timeout

    def start_body(self) -> None:
        """The head is complete: reads from now on are the request's body."""
        self.in_body = True
        self.body_bytes = 0
        self.body_wait = 0.0

    def after_read(self, got: int, waited: float, stalled: float, now: float) -> str | None:
        """Account for a read of ``got`` bytes (0: the wait ran out) that waited ``waited``
        seconds, ``stalled`` seconds since the read began; the reason to cut, if any."""
        limits = self.limits
        if not self.in_body:
            self.head_bytes += got
            if now < self.head_deadline:
                return None
            if self.head_bytes:
                return f"request head not complete within {limits.header_timeout:g}s (408)"
            return f"no request within {limits.header_timeout:g}s"
        self.body_bytes += got
        self.body_wait += waited
        if not got and stalled >= limits.header_timeout:
            return f"request body silent for {limits.header_timeout:g}s"
        if (
            limits.body_min_rate
            and self.body_wait > limits.header_timeout
            and self.body_bytes < limits.body_min_rate * self.body_wait
        ):
            return (
                f"request body slower than {limits.body_min_rate} bytes/s "
                f"({self.body_bytes} bytes in {self.body_wait:.1f}s)"
            )
        return None


def _cut(sock: socket.socket, pace: Pace, reason: str, reply: bytes | None) -> Cut:
    """Log the end of the connection (info, once), answer without waiting, shut it."""
    get_logger().info(
        "werkzeug", message=f"Closing connection from {peer_text(pace.peer)}: {reason}"
    )
    try:
        if reply:
            sock.setblocking(False)
            sock.send(reply)
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass
    return Cut(reason)


class PacedReader(io.RawIOBase):
    """The client socket's reading side (under ``rfile``'s buffer), within the deadlines.

    Raises :class:`Cut` from a read that misses one, after the connection was shut (and
    a late, partial head answered ``408``).
    """

    def __init__(self, sock: socket.socket, pace: Pace) -> None:
        self._sock = sock
        self.pace = pace

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._sock.fileno()

    def readinto(self, buffer: Any) -> int:
        sock, pace = self._sock, self.pace
        began = start = time.monotonic()
        while True:
            try:
                got = sock.recv_into(buffer)
            except TimeoutError:
                got = -1
            now = time.monotonic()
            if got:  # bytes, or the wait ran out (-1)
                reason = pace.after_read(max(got, 0), now - start, now - began, now)
                if reason is not None:
                    raise _cut(sock, pace, reason, REPLY_408 if reason.endswith("(408)") else None)
            if got >= 0:
                return got  # 0: the client closed its side
            start = now


class PacedWriter(io.BufferedIOBase):
    """The client socket's writing side (``wfile``): each write must be taken by the client
    within the write timeout, or the connection is shut and :class:`Cut` raised."""

    def __init__(self, sock: socket.socket, pace: Pace) -> None:
        self._sock = sock
        self.pace = pace

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._sock.fileno()

    def write(self, data: Any) -> int:
        sock = self._sock
        view = memoryview(data).cast("B")
        size = view.nbytes
        limit = self.pace.limits.write_timeout
        deadline = time.monotonic() + limit if limit > 0 else None
        while view:
            try:
                sent = sock.send(view)
            except TimeoutError:
                sent = 0
            view = view[sent:]
            if view and deadline is not None and time.monotonic() >= deadline:
                reason = f"client did not read the response for {limit:g}s"
                raise _cut(sock, self.pace, reason, None)
        return size
