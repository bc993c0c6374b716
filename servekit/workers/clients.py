"""Client connections that stop waiting for a silent client (sync and gthread workers).

gunicorn's sync and threaded workers read a request with a blocking socket and no
time limit. A client that sends half a request head and then nothing holds a sync
worker until the master kills it for silence (its client then gets a 500), and a
gthread thread for good: a handful of such clients takes a server down. Here a
read that waits longer than the read timeout ends as if the client had gone away
(gunicorn's ``NoMoreData``): the connection is closed quietly and the worker or
thread serves the next one.
"""

from __future__ import annotations

import socket
from typing import Any

from gunicorn.http.errors import NoMoreData

__all__ = ["TimedClientSocket", "adopt"]


class TimedClientSocket(socket.socket):
    """A client connection whose blocking reads give up after ``read_timeout`` seconds."""

    __slots__ = ("read_timeout",)
    read_timeout: float

    def setblocking(self, flag: bool) -> None:
        """Blocking mode means "blocking, up to the read timeout" for this socket."""
        if flag:
            self.settimeout(self.read_timeout)
        else:
            super().setblocking(flag)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """``socket.recv``; a silent client counts as gone."""
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            raise NoMoreData(b"") from None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``socket.recv_into``; a silent client counts as gone."""
        try:
            return super().recv_into(buffer, nbytes, flags)
        except TimeoutError:
            raise NoMoreData(b"") from None


def adopt(client: socket.socket, read_timeout: float) -> socket.socket:
    """``client`` as a :class:`TimedClientSocket` in blocking mode (unchanged if 0: no limit)."""
    if read_timeout <= 0:
        client.setblocking(True)
        return client
    timed = TimedClientSocket(client.family, client.type, client.proto, fileno=client.detach())
    timed.read_timeout = read_timeout
    timed.setblocking(True)
    return timed
