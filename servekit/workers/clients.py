"""Client connections that stop waiting for a silent client (sync and gthread workers).

gunicorn's sync and threaded workers read a request with a blocking socket and no
time limit. A client that sends half a request head and then nothing holds a sync
worker until the master kills it for silence (its client then gets a 500), and a
gthread thread for good: a handful of such clients takes a server down. Here a
read that waits longer than the read timeout ends as if the client had gone away
(gunicorn's ``NoMoreData``): the connection is closed quietly and the worker or
thread serves the next one.

The limit is the kernel's (``SO_RCVTIMEO``/``SO_SNDTIMEO``) on a socket that stays
in plain blocking mode. Python's own ``settimeout()`` would do the same with a
non-blocking socket and a ``poll()`` before every ``recv``/``send``: a quarter more
system calls per request, measured as 7 % of gthread's throughput (BENCHMARKS.md).
A timed-out kernel wait fails with ``EAGAIN``, which a blocking socket raises as
``BlockingIOError``; reads turn it into ``NoMoreData``, a write raises it as the
socket error it is (gunicorn logs it and closes the connection, as it did for
``settimeout()``'s ``TimeoutError``).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from gunicorn.http.errors import NoMoreData

__all__ = ["TimedClientSocket", "adopt"]


class TimedClientSocket(socket.socket):
    """A client connection whose blocking reads give up after the kernel's receive timeout."""

    __slots__ = ()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """``socket.recv``; a client silent for the read timeout counts as gone."""
        try:
            return super().recv(bufsize, flags)
        except BlockingIOError:
            if self.gettimeout() is not None:
                raise  # a non-blocking read that found nothing: not a timeout
            raise NoMoreData(b"") from None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``socket.recv_into``; a client silent for the read timeout counts as gone."""
        try:
            return super().recv_into(buffer, nbytes, flags)
        except BlockingIOError:
            if self.gettimeout() is not None:
                raise  # a non-blocking read that found nothing: not a timeout
            raise NoMoreData(b"") from None


def _timeval(seconds: float) -> bytes:
    """``seconds`` as a ``struct timeval`` for ``setsockopt``."""
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))


def adopt(client: socket.socket, read_timeout: float) -> socket.socket:
    """``client`` in blocking mode; as a :class:`TimedClientSocket` whose reads and
    writes wait at most ``read_timeout`` seconds (unchanged if 0: no limit)."""
    client.setblocking(True)
    if read_timeout <= 0:
        return client
    timeval = _timeval(read_timeout)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    return TimedClientSocket(client.family, client.type, client.proto, fileno=client.detach())
