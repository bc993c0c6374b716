"""Client connections that stop waiting for a silent client (sync and gthread workers).

gunicorn's sync and threaded workers read a request with a blocking socket and no
time limit. A client that sends half a request head and then nothing holds a sync
worker until the master kills it for silence (its client then gets a 500), and a
gthread thread for good: a handful of such clients takes a server down. Here a
read that waits longer than the limit ends as if the client had gone away
(gunicorn's ``NoMoreData``): the connection is closed quietly and the worker or
thread serves the next one.

The limit is the kernel's (``SO_RCVTIMEO``/``SO_SNDTIMEO``) on a socket that stays in
plain blocking mode. Python's own ``settimeout()`` would do the same with a
non-blocking socket and a ``poll()`` before every ``recv``/``send``: a quarter more
system calls per request, 7 % of gthread's throughput (BENCHMARKS.md). Set on a TCP
listener, the two options are copied by the kernel into every connection it accepts,
so a connection costs no system call more than gunicorn's own accept; a unix socket
listener does not pass them on, and there each connection gets them itself.

Two paths keep Python's timeout mode, because the kernel's limit does not reach them:
TLS (OpenSSL retries a timed-out read on a blocking socket for good, so a TLS connection
gets ``settimeout()`` and its ``TimeoutError``), and ``sendfile()`` (CPython waits in
``select()`` without a limit once the kernel's send times out, so the socket is in
timeout mode for the duration of the call).

A timed-out kernel wait fails with ``EAGAIN``, which a blocking socket raises as
``BlockingIOError``: reads turn it into ``NoMoreData``; a write lets it through as the
socket error it is (gunicorn logs it and closes the connection).
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import select
import socket
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

from gunicorn.http.errors import NoMoreData

from servekit.backends.gunicorn.workers.limits import Cut, Limits, Pace
from servekit.backends.gunicorn.workers.slots import Slots

__all__ = ["ClientLimit", "TimedClientSocket", "quantum"]

_NO_TIMEOUT = bytes(struct.calcsize("@ll"))


class TimedClientSocket(socket.socket):
    """A client connection whose blocking reads and writes keep :class:`~.limits.Pace`'s
    deadlines: the kernel ends each wait after a short quantum, and the deadlines are
    checked then and after every read.

    While a pool thread serves it, :attr:`slots` is the worker's
    :class:`~.slots.Slots`: a read that finds nothing yet, or a write the client's window
    cannot take at once, waits with the thread's slot given back.
    """

    __slots__ = ("limit", "pace", "slots")
    limit: float
    pace: Pace | None
    slots: Slots | None

    def _timed_read(self, call: Callable[[int], Any], size: Callable[[Any], int], flags: int) -> Any:
        slots = self.slots
        if slots is not None and self.gettimeout() is None:
            try:
                result = call(flags | socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass  # nothing yet: wait for the client without the slot
            else:
                if self.pace is not None:
                    self._account(self.pace, size(result), 0.0, time.monotonic())
                return result
            if slots.step_away():
                try:
                    return self._waiting_read(call, size, flags)
                finally:
                    slots.step_back()
        return self._waiting_read(call, size, flags)

    def _waiting_read(self, call: Callable[[int], Any], size: Callable[[Any], int], flags: int) -> Any:
        pace = self.pace
        while True:
            start = time.monotonic()
            try:
                result = call(flags)
            except BlockingIOError:
                if self.gettimeout() is not None:
                    raise  # a non-blocking read that found nothing: not a timeout
                if pace is None:
                    raise NoMoreData(b"") from None
                now = time.monotonic()
                self._account(pace, 0, now - start, now)
                continue
            if pace is not None and self.gettimeout() is None:
                now = time.monotonic()
                self._account(pace, size(result), now - start, now)
            return result

    def _account(self, pace: Pace, got: int, waited: float, now: float) -> None:
        try:
            pace.after_read(got, waited, now)
        except Cut as cut:
            self._end(cut.reply)
            raise

    def _end(self, reply: bytes | None) -> None:
        """Answer (without waiting) and shut the connection: the close that follows
        (gunicorn's graceful one reads what is left) does not wait on the client."""
        try:
            if reply:
                super().send(reply, socket.MSG_DONTWAIT)
            self.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """``socket.recv`` within the request's deadlines."""
        data: bytes = self._timed_read(
            lambda f: super(TimedClientSocket, self).recv(bufsize, f), len, flags
        )
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``socket.recv_into`` within the request's deadlines."""
        got: int = self._timed_read(
            lambda f: super(TimedClientSocket, self).recv_into(buffer, nbytes, f), int, flags
        )
        return got

    def sendall(self, data: Any, flags: int = 0) -> None:
        """``socket.sendall``; the client must take it within the write timeout, waited
        for exactly (each wait is a ``poll`` for what is left of it) and, on a pool thread,
        without the thread's slot."""
        if self.gettimeout() is not None:
            super().sendall(data, flags)
            return
        view = memoryview(data).cast("B")
        deadline = time.monotonic() + self.limit if self.limit > 0 else None
        poller: select.poll | None = None
        away: Slots | None = None  # the slots this thread stepped away from
        try:
            while view:
                with contextlib.suppress(BlockingIOError):
                    view = view[self.send(view, flags | socket.MSG_DONTWAIT) :]
                if not view:
                    return
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise self._write_missed()
                if poller is None:
                    poller = select.poll()
                    poller.register(self, select.POLLOUT)
                    slots = self.slots
                    away = slots if slots is not None and slots.step_away() else None
                if not poller.poll(None if left is None else max(1, math.ceil(left * 1000))):
                    raise self._write_missed()  # no room for the write all this time
        finally:
            if away is not None:
                away.step_back()

    def _write_missed(self) -> Exception:
        pace = self.pace
        if pace is None:
            return BlockingIOError(errno.EAGAIN, "the client did not read the response")
        cut = pace.write_missed()
        self._end(None)
        return cut

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """``socket.sendfile`` with the limit on each wait (``TimeoutError`` when it runs
        out), without the thread's slot (no app code runs meanwhile)."""
        if self.gettimeout() is not None:
            return super().sendfile(file, offset, count)
        slots = self.slots
        away: Slots | None = None
        try:
            self.settimeout(self.limit or None)
            # only a regular file goes to os.sendfile(); else Python reads it (app code)
            if slots is not None and _regular(file) and slots.step_away():
                away = slots
            return super().sendfile(file, offset, count)
        finally:
            self.settimeout(None)
            if away is not None:
                away.step_back()


def _regular(file: Any) -> bool:
    """Whether ``file`` is a regular file (what ``socket.sendfile`` hands to the kernel)."""
    try:
        return stat.S_ISREG(os.fstat(file.fileno()).st_mode)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


class _TlsClientSocket(socket.socket):
    """A client connection about to be wrapped in TLS: blocking mode means Python's
    timeout mode with the limit, which the TLS socket takes over when it wraps this one
    (gunicorn's gthread worker sets blocking mode just before wrapping)."""

    __slots__ = ("limit",)
    limit: float

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.limit)
        else:
            super().setblocking(flag)


def _timeval(seconds: float) -> bytes:
    """``seconds`` as a ``struct timeval`` for ``setsockopt``."""
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))


def _limit(sock: Any, timeval: bytes) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def quantum(limits: Limits, write_timeout: float) -> float:
    """How long one kernel wait lasts before the deadlines are looked at again: the
    precision of every deadline (a quarter of the shortest one, at most 1 s)."""
    spans = [limits.header_timeout, 4.0]
    if write_timeout > 0:
        spans.append(write_timeout)
    return max(0.01, min(spans) / 4)


class ClientLimit:
    """Accepts connections whose reads and writes wait at most ``seconds`` (0: no limit).

    Create it in the worker once its listeners are set up. It writes the limit (or its
    absence) on them: the listening socket outlives a reload with another ``timeout``.
    With ``tls`` each connection gets Python's timeout mode instead (see above).

    With ``limits`` (servekit's workers) each connection also gets a
    :class:`~.limits.Pace` (deadlines for its head, body and writes, logged through
    ``log``), and ``seconds`` is the write timeout: the kernel's wait is then a short
    quantum after which the deadlines are checked.
    """

    def __init__(
        self,
        listeners: list[Any],
        seconds: float,
        *,
        tls: bool = False,
        limits: Limits | None = None,
        log: Any = None,
    ) -> None:
        self.seconds = seconds
        self.tls = tls
        self.limits = limits
        self.log = log
        wait = seconds if limits is None else quantum(limits, seconds)
        self.timeval = _timeval(wait) if wait > 0 and not tls else None
        #: per listener (by descriptor): whether accepted connections inherit the limit
        self._inherits: dict[int, bool] = {}
        for listener in listeners:
            _limit(listener, self.timeval or _NO_TIMEOUT)

    def accept(self, listener: Any) -> tuple[socket.socket, Any]:
        """``listener.accept()``, in blocking mode, with the limit.

        Raises what ``accept()`` raises (``BlockingIOError`` when a sibling was quicker).
        """
        fd, addr = listener._accept()
        if self.tls and self.seconds > 0:
            tls = _TlsClientSocket(listener.family, listener.type, listener.proto, fileno=fd)
            tls.limit = self.seconds
            tls.setblocking(True)
            return tls, addr
        if self.timeval is None:
            plain = socket.socket(listener.family, listener.type, listener.proto, fileno=fd)
            plain.setblocking(True)
            return plain, addr
        client = TimedClientSocket(listener.family, listener.type, listener.proto, fileno=fd)
        client.limit = self.seconds
        client.pace = None
        client.slots = None
        if self.limits is not None:
            client.pace = Pace(self.limits, self.log, addr, self.seconds)
        if socket.getdefaulttimeout() is not None:  # the app set one; not for this socket
            client.setblocking(True)
        inherits = self._inherits.get(fd_key := listener.fileno())
        if inherits is None:
            got = client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, len(_NO_TIMEOUT))
            inherits = self._inherits[fd_key] = got != _NO_TIMEOUT
        if not inherits:
            _limit(client, self.timeval)
        return client, addr
