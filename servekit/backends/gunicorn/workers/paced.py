"""The cooperative workers' (gevent, eventlet) client sockets and mixin: every read and
write of a connection keeps :class:`~.limits.Pace`'s deadlines."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

from servekit.backends.gunicorn.workers.limits import Cut, Pace, Refuses413, begin_body, current

__all__ = ["PacedAsync", "PacedSocket"]


class PacedSocket:
    """A cooperative (gevent, eventlet) client socket whose reads and writes keep
    :class:`Pace`'s deadlines; everything else goes to the socket it wraps.

    Each read waits at most until the next deadline (``settimeout`` on a green socket
    costs no system call), each ``sendall`` at most the write timeout in all.
    """

    def __init__(self, sock: Any, pace: Pace) -> None:
        self._sock = sock
        self.pace = pace

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def _read(self, call: Callable[[], Any], size: Callable[[Any], int]) -> Any:
        pace = self.pace
        sock = self._sock
        previous = sock.gettimeout()
        try:
            while True:
                start = time.monotonic()
                sock.settimeout(max(0.001, pace.read_wait(start)))
                try:
                    result = call()
                except TimeoutError:
                    now = time.monotonic()
                    self._account(0, now - start, now)
                    continue
                now = time.monotonic()
                self._account(size(result), now - start, now)
                return result
        finally:
            sock.settimeout(previous)

    def _account(self, got: int, waited: float, now: float) -> None:
        try:
            self.pace.after_read(got, waited, now)
        except Cut as cut:
            self._end(cut.reply)
            raise

    def _end(self, reply: bytes | None) -> None:
        sock = self._sock
        try:
            sock.settimeout(0.5)
            if reply:
                sock.sendall(reply)
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """``recv``, within the head deadline or the body's rate."""
        if self._sock.gettimeout() == 0.0:
            return bytes(self._sock.recv(bufsize, flags))
        data: bytes = self._read(lambda: self._sock.recv(bufsize, flags), len)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``recv_into``, within the head deadline or the body's rate."""
        if self._sock.gettimeout() == 0.0:
            return int(self._sock.recv_into(buffer, nbytes, flags))
        got: int = self._read(lambda: self._sock.recv_into(buffer, nbytes, flags), int)
        return got

    def sendall(self, data: Any, flags: int = 0) -> None:
        """``sendall``, taken by the client within the write timeout or the connection ends."""
        sock = self._sock
        limit = self.pace.write_timeout
        previous = sock.gettimeout()
        if previous == 0.0 or limit <= 0:
            sock.sendall(data, flags)
            return
        view = memoryview(data).cast("B")
        deadline = time.monotonic() + limit
        try:
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.pace.write_missed()
                sock.settimeout(left)
                try:
                    sent = sock.send(view, flags)
                except TimeoutError:
                    continue
                view = view[sent:]
        except Cut:
            self._end(None)
            raise
        finally:
            sock.settimeout(previous)


class PacedAsync(Refuses413):
    """Mixin for the cooperative workers (gevent, eventlet): every connection is served
    through a :class:`PacedSocket`, so its heads, bodies and writes keep the deadlines
    (with ``keepalive=0`` too: the deadlines do not depend on gunicorn's keep-alive timer)."""

    cfg: Any

    def timeout_ctx(self) -> Any:
        """No timer around the parse: the :class:`Pace` deadlines bound it (gunicorn's
        ``keepalive`` timer also cut a slow first request, at ``keepalive`` seconds)."""
        return contextlib.nullcontext()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """gunicorn's ``handle`` with the client behind a :class:`PacedSocket`."""
        pace = Pace(current(), self.log, addr, float(self.cfg.timeout))
        super().handle(listener, PacedSocket(client, pace), addr)  # type: ignore[misc]

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        """Refuse a declared body over the limit, time the body, then serve; the next
        head on a kept-alive connection is timed from the end of this response."""
        begin_body(req, sock)
        try:
            return super().handle_request(listener_name, req, sock, addr)  # type: ignore[misc]
        finally:
            pace = getattr(sock, "pace", None)
            if pace is not None:
                pace.start_head(idle=float(self.cfg.keepalive))
