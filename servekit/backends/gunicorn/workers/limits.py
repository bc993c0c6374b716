"""Deadlines for slow clients, shared by servekit's gunicorn workers.

A limit on silence ("no byte for N seconds") does not stop a client that sends one byte
every few seconds. These are deadlines and rates instead, checked around every read and
write a worker makes on a client connection:

* the request head (request line and headers) must be complete ``header_timeout``
  seconds after the connection was accepted, or after the previous response on a
  kept-alive connection; a late head gets ``408`` when part of it arrived (a quiet close
  when nothing did);
* a request body must come at ``body_min_rate`` bytes/s on average, counted over the time
  spent waiting on the client once that time passes ``header_timeout`` (the grace), and no
  single wait for body bytes may exceed ``header_timeout``;
* a body larger than ``max_body_size`` gets ``413`` (a ``Content-Length`` over it before
  the app runs; a chunked body as soon as the app has read past it);
* each write of a response must be taken by the client within the write timeout (the
  worker's ``timeout``).

The values are servekit's, not gunicorn's settings: the master calls :func:`configure`
before it forks (in ``Application.load_config``, again on a reload), and the workers
inherit them; under plain gunicorn the defaults apply.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunicorn import util
from gunicorn.http.errors import NoMoreData

__all__ = [
    "REPLY_408",
    "BodyTooLarge",
    "Cut",
    "Limits",
    "Pace",
    "Refuses413",
    "begin_body",
    "configure",
    "current",
    "guard_body",
    "reply_413",
]

REPLY_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    """servekit's client limits, as the options set them (0: that limit is off)."""

    header_timeout: float = 10.0
    body_min_rate: int = 1024
    max_body_size: int = 1 << 30


_limits = Limits()


def configure(limits: Limits) -> None:
    """Set the limits for the workers forked from now on (call in the master)."""
    global _limits
    _limits = limits


def current() -> Limits:
    """The limits this process was given (the defaults under plain gunicorn)."""
    return _limits


class Cut(NoMoreData):  # type: ignore[misc]
    """A client missed a deadline: its connection ends (gunicorn closes it quietly)."""

    def __init__(self, reason: str, reply: bytes | None) -> None:
        super().__init__(b"")
        self.reason = reason
        #: what to send before closing (None: nothing)
        self.reply = reply

    def __str__(self) -> str:
        return self.reason


class BodyTooLarge(Exception):
    """The request body is larger than ``max_body_size``: answered with 413."""


class Pace:
    """The deadlines of one client connection. The socket wrappers call
    :meth:`after_read` after every read (also one that timed out with nothing);
    the worker calls :meth:`start_body` once a head is parsed and :meth:`start_head`
    after a response on a connection that stays open.
    """

    __slots__ = (
        "body_bytes",
        "body_wait",
        "head_bytes",
        "head_deadline",
        "idle_deadline",
        "in_body",
        "limits",
        "log",
        "peer",
        "write_timeout",
    )

    def __init__(
        self, limits: Limits, log: Any, peer: Any, write_timeout: float, now: float | None = None
    ) -> None:
        self.limits = limits
        self.log = log
        self.peer = peer
        self.write_timeout = write_timeout
        self.body_bytes = 0
        self.body_wait = 0.0
        self.start_head(now)

    def start_head(self, now: float | None = None, idle: float = 0.0) -> None:
        """A request head is awaited from now: on a new connection, or (``idle`` > 0: the
        keep-alive limit) on a kept-alive one, which may stay silent ``idle`` seconds."""
        now = time.monotonic() if now is None else now
        self.in_body = False
        self.head_bytes = 0
        self.head_deadline = now + self.limits.header_timeout
        self.idle_deadline = now + idle if idle > 0 else self.head_deadline

    def start_body(self) -> None:
        """The head is complete: reads from now on are the request's body."""
        self.in_body = True
        self.body_bytes = 0
        self.body_wait = 0.0

    def read_wait(self, now: float) -> float:
        """How long the next read may wait for the client before it is checked again."""
        if self.in_body:
            return self.limits.header_timeout
        if not self.head_bytes:
            return max(0.0, min(self.head_deadline, self.idle_deadline) - now)
        return max(0.0, self.head_deadline - now)

    def after_read(self, got: int, waited: float, now: float) -> None:
        """Account for a read of ``got`` bytes that waited ``waited`` seconds.

        Raises:
            Cut: a deadline or the minimum rate was missed (logged at info, once).
            BodyTooLarge: the body grew past ``max_body_size``.
        """
        limits = self.limits
        if not self.in_body:
            if not self.head_bytes and not got and now >= self.idle_deadline:
                # the keep-alive limit: a quiet close, as gunicorn ends an idle connection
                raise Cut("keep-alive connection idle", None)
            self.head_bytes += got
            if now >= self.head_deadline and got == 0:
                if self.head_bytes:
                    raise self.cut(
                        f"request head not complete within {limits.header_timeout:g}s (408)",
                        REPLY_408,
                    )
                raise self.cut(f"no request within {limits.header_timeout:g}s", None)
            if now >= self.head_deadline:
                raise self.cut(
                    f"request head not complete within {limits.header_timeout:g}s (408)",
                    REPLY_408,
                )
            return
        self.body_bytes += got
        self.body_wait += waited
        if got == 0 and waited >= limits.header_timeout:
            raise self.cut(f"request body silent for {limits.header_timeout:g}s", None)
        if (
            limits.body_min_rate
            and self.body_wait > limits.header_timeout
            and self.body_bytes < limits.body_min_rate * self.body_wait
        ):
            raise self.cut(
                f"request body slower than {limits.body_min_rate} bytes/s "
                f"({self.body_bytes} bytes in {self.body_wait:.1f}s)",
                None,
            )

    def write_missed(self) -> Cut:
        """The client did not take a write within the write timeout."""
        return self.cut(f"client did not read the response for {self.write_timeout:g}s", None)

    def cut(self, reason: str, reply: bytes | None) -> Cut:
        """Log the end of this connection (info) and make the exception that ends it."""
        self.log.info("Closing connection from %s: %s", _peer(self.peer), reason)
        return Cut(reason, reply)


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "unix socket")


def begin_body(req: Any, sock: Any) -> None:
    """A head was parsed on ``sock``: refuse a declared body over the limit, then time
    the body.

    Raises:
        BodyTooLarge: ``Content-Length`` is larger than ``max_body_size``.
    """
    limit = current().max_body_size
    if limit:
        for name, value in getattr(req, "headers", ()):
            if name == "CONTENT-LENGTH" and str(value).strip().isdigit() and int(value) > limit:
                raise BodyTooLarge(f"Content-Length {int(value)} is over {limit} bytes")
            if name == "TRANSFER-ENCODING" and getattr(req, "body", None) is not None:
                req.body.reader = _Counted(req.body.reader, limit)
    pace = getattr(sock, "pace", None)
    if pace is not None:
        pace.start_body()


class _Counted:
    """A body reader (gunicorn's chunked one) that refuses to go past ``limit`` bytes."""

    def __init__(self, reader: Any, limit: int) -> None:
        self._reader = reader
        self._limit = limit
        self._read = 0
        #: set once a read went past the limit (the app may have caught the error)
        self.tripped = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    @property
    def message(self) -> str:
        return f"chunked request body over {self._limit} bytes"

    def read(self, size: int) -> bytes:
        data: bytes = self._reader.read(size)
        self._read += len(data)
        if self._read > self._limit:
            self.tripped = True
            raise BodyTooLarge(self.message)
        return data


def guard_body(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app``, with a chunked body over ``max_body_size`` answered 413 even when the app
    caught the error (Flask and Django turn it into their own 500): ``start_response``
    after the limit was hit raises :class:`BodyTooLarge` again, past the app's handlers.
    Only chunked requests pay for it (one lookup for the others)."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if "HTTP_TRANSFER_ENCODING" not in environ:
            return app(environ, start_response)
        reader = getattr(environ.get("wsgi.input"), "reader", None)
        if not isinstance(reader, _Counted):
            return app(environ, start_response)

        def checked(status: str, headers: Any, exc_info: Any = None) -> Any:
            if reader.tripped:
                raise BodyTooLarge(reader.message)
            if exc_info:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        return app(environ, checked)

    return guarded


def reply_413(worker: Any, client: Any, addr: Any, exc: BodyTooLarge) -> None:
    """Answer a body over the limit with 413 and log it (info)."""
    worker.log.info("Closing connection from %s: %s (413)", _peer(addr), exc)
    with contextlib.suppress(OSError):
        util.write_error(client, 413, "Content Too Large", str(exc))


class Refuses413:
    """Mixin for servekit's gunicorn workers, listed before gunicorn's worker class:
    a body over ``max_body_size`` is answered 413, not as an app error (500)."""

    log: Any
    wsgi: Any

    def load_wsgi(self) -> None:
        """gunicorn's, with :func:`guard_body` around the app."""
        super().load_wsgi()  # type: ignore[misc]
        self.wsgi = guard_body(self.wsgi)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """413 for :class:`BodyTooLarge`; gunicorn's answer for anything else."""
        if isinstance(exc, BodyTooLarge):
            reply_413(self, client, addr, exc)
            return
        super().handle_error(req, client, addr, exc)  # type: ignore[misc]
