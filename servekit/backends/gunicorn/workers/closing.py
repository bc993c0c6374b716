"""Graceful closes that wait on the gthread worker's poller, not on its main thread.

gunicorn closes a connection gracefully by sending its FIN, then reading what the client
still sends (up to 2 s and 64 KiB) before it closes: on the worker's main thread, which
meanwhile neither accepts nor reads heads. :class:`ClosesOnPoller` registers the
connection on the poller instead and closes it when the client has closed its side, sent
64 KiB more, or 2 s have passed.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from functools import partial
from typing import Any

from servekit.backends.gunicorn.workers.heads import HeadConn

__all__ = ["ClosesOnPoller", "recv_now"]

#: a graceful close waits this long for the client's own close, reading at most _CLOSE_DRAIN
_CLOSE_LINGER = 2.0
_CLOSE_DRAIN = 65536


def recv_now(sock: Any, size: int) -> bytes | None:
    """What a non-blocking socket has (b"": closed or failed; None: nothing yet)."""
    try:
        return socket.socket.recv(sock, size)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


class ClosesOnPoller:
    """Mixin for the gthread worker: the connections in ``_closing`` wait on its poller
    for the client's close (they are counted in ``nr_conns``, so a stop waits for them)."""

    poller: Any
    nr_conns: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: connections closed gracefully, waiting on the poller for the client's close
        self._closing: dict[HeadConn, bool] = {}

    def _close_later(self, conn: HeadConn) -> None:
        """gunicorn's graceful close (send FIN, read what the client still sends, up to
        2 s and 64 KiB, then close), waiting on the poller instead of the main thread."""
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self._on_closing, conn))
        except (OSError, ValueError, KeyError):
            conn.closer = None
            conn.close()
            return
        conn.expires = time.monotonic() + _CLOSE_LINGER
        conn.head.clear()
        self._closing[conn] = True
        self.nr_conns += 1  # gunicorn counted it out: held until closed (a stop waits)

    def _on_closing(self, conn: HeadConn, _sock: Any) -> None:
        if conn not in self._closing:
            return
        data = recv_now(conn.sock, 4096)
        if data is None:
            return
        conn.head += data
        if not data or len(conn.head) >= _CLOSE_DRAIN:
            self._closed(conn)

    def _closed(self, conn: HeadConn) -> None:
        if self._closing.pop(conn, False) is False:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.closer = None
        conn.close()

    def _expire_closing(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._closing if c.expires <= now]:
            self._closed(conn)
