"""What adapts eventlet's green sockets and logging to gunicorn's async worker base."""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["ListenerAddress", "PatchLogHandler", "green_sendfile"]


class ListenerAddress:
    """Stand-in for a listener in ``AsyncWorker.handle``, which only asks for its address.

    The listening socket is closed at shutdown while drained connections are
    still being served, so the address is read once up front.
    """

    __slots__ = ("_address",)

    def __init__(self, address: Any) -> None:
        self._address = address

    def getsockname(self) -> Any:
        """Return the address the listener was bound to."""
        return self._address


def green_sendfile(sock: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    """Send *count* bytes of *file* from *offset* on a green socket with ``os.sendfile``.

    The standard ``socket.sendfile`` refuses non-blocking sockets, and every
    green socket is non-blocking underneath, so gunicorn's zero-copy file
    responses would otherwise fail.
    """
    from eventlet.hubs import trampoline

    out_fd = sock.fileno()
    in_fd = file.fileno()
    if count is None:
        count = os.fstat(in_fd).st_size - offset
    total = 0
    while total < count:
        try:
            sent = os.sendfile(out_fd, in_fd, offset + total, min(count - total, 1 << 30))
        except BlockingIOError:
            trampoline(out_fd, write=True)
            continue
        if sent == 0:  # end of file came before count bytes
            break
        total += sent
    if total:
        file.seek(offset + total)
    return total


class PatchLogHandler(logging.Handler):
    """Sends what eventlet logs while patching to the worker's log at debug level."""

    def emit(self, record: logging.LogRecord) -> None:
        from servekit.logs import get_logger

        get_logger().debug(record.getMessage(), logger="eventlet")
