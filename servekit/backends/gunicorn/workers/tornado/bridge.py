"""What a pool thread holds of a client connection, to read the request and write the response.

gunicorn's body readers read from an :class:`~gunicorn.http.unreader.Unreader` and its
response writer writes to a socket; :class:`BodySource` and :class:`ClientSocket` are
those two for a :class:`~.connection.Connection` that lives on the event loop. Each
call from the app's thread hops to the loop and waits there for bytes to arrive or to
be flushed to the kernel.
"""

from __future__ import annotations

import io
import threading
import time
from typing import TYPE_CHECKING, Any

from gunicorn.http.unreader import Unreader

from servekit.backends.gunicorn.workers.limits import Pace

if TYPE_CHECKING:
    from servekit.backends.gunicorn.workers.tornado.connection import Connection

__all__ = ["BodySource", "ClientGone", "ClientSocket"]

#: what one read from the client returns at most, as gunicorn's socket reader
_RECEIVE_SIZE = 8192
_RECEIVE_MAX = 1024 * 1024


class ClientGone(ConnectionError):
    """The client closed or reset the connection, or stayed silent past the limit."""


class BodySource(Unreader):  # type: ignore[misc]
    """What gunicorn's parser and body readers read: first the bytes already received,
    then, once :attr:`live`, more from the connection (called on the app's thread)."""

    buf: io.BytesIO

    def __init__(self, data: bytes, connection: Connection) -> None:
        super().__init__()
        self._data = data
        self._connection = connection
        #: False while the head is parsed on the loop: nothing beyond ``data`` then
        self.live = False
        #: a ``time.monotonic()`` by which each read must have finished (None: no bound)
        self.deadline: float | None = None
        #: the body's rate and size limits (set once the head is parsed)
        self.pace: Pace | None = None

    def chunk(self, size_hint: int | None = None) -> bytes:
        """The next bytes from the client (``b""`` at its end)."""
        if self._data:
            data, self._data = self._data, b""
            return data
        if not self.live:
            return b""
        size = _RECEIVE_SIZE
        if size_hint and size_hint > size:
            size = min(size_hint, _RECEIVE_MAX)
        pace = self.pace
        if pace is None:
            return self._connection.receive_from_thread(size, self.deadline)
        start = time.monotonic()
        deadline = start + pace.limits.header_timeout
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)
        try:
            data = self._connection.receive_from_thread(size, deadline)
        except ClientGone:
            now = time.monotonic()
            pace.after_read(0, now - start, now)  # a Cut when the body was too slow
            raise
        now = time.monotonic()
        pace.after_read(len(data), now - start, now)
        return data

    def leftover(self) -> bytes:
        """Take the bytes read but not used (the start of a pipelined request)."""
        data = self.buf.getvalue() + self._data
        self.buf = io.BytesIO()
        self._data = b""
        return data


class ClientSocket:
    """The connection as gunicorn's response writer and error pages use a socket.

    On a pool thread :meth:`sendall` blocks until the bytes are flushed to the kernel
    (that wait is the back-pressure a streamed response needs); on the loop's own
    thread it queues them. Between :meth:`cork` and :meth:`uncork` (which nest) what
    is sent is gathered and leaves in one piece: the head with the first body bytes,
    or a whole response whose body was in memory anyway (see :meth:`take`).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._loop_thread = threading.get_ident()
        self._held: list[bytes] | None = None
        self._depth = 0

    def sendall(self, data: bytes) -> None:
        """Send all of ``data``.

        Raises:
            ClientGone: the connection is closed, or the client stopped reading.
        """
        if self._held is not None:
            self._held.append(bytes(data))
        elif threading.get_ident() == self._loop_thread:
            self._connection.write_now(bytes(data))
        else:
            self._connection.send_from_thread(bytes(data))

    def send(self, data: bytes) -> int:
        """Send all of ``data`` (never part of it); return its length."""
        self.sendall(data)
        return len(data)

    def cork(self) -> None:
        """Hold what is sent from now on until the matching :meth:`uncork`."""
        self._depth += 1
        if self._held is None:
            self._held = []

    def uncork(self) -> None:
        """End a :meth:`cork`; the outermost one sends what was held."""
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            held = self.take()
            if held:
                self.sendall(held)

    def take(self) -> bytes:
        """End every :meth:`cork` and return what was held, unsent (for the loop to write)."""
        held, self._held, self._depth = self._held, None, 0
        return b"".join(held or ())

    def gettimeout(self) -> float:
        """0.0: gunicorn's error pages then send without toggling blocking mode."""
        return 0.0

    def setblocking(self, flag: bool) -> None:
        """Accepted and ignored: the connection is always non-blocking."""

    def getpeername(self) -> Any:
        """The client's address."""
        return self._connection.peer

    def getsockname(self) -> Any:
        """The address the client connected to."""
        return self._connection.server_address
