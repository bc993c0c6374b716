"""The listening side of the tornado worker: accept control, connection tracking, drain.

:class:`DrainingServer` accepts from gunicorn's listeners only while a request slot is
free, so a burst beyond the worker's threads waits in the shared listen queue for a
worker that has one. It knows which connections have a request in flight, which are
idle between keep-alive requests and which have not sent a request yet, and drains them
on shutdown. A WSGI app is served on servekit's own connections (:mod:`.connection`); a
tornado application keeps tornado's HTTP/1.1 connections.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tornado import httputil, iostream
from tornado.http1connection import HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from servekit.backends.gunicorn.workers.tornado.connection import Connection
from servekit.backends.gunicorn.workers.tornado.container import Container

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["DrainingServer"]

# How long a drain waits for a connection that was accepted but has not sent a
# complete request head yet (e.g. one just taken from the listen backlog).
_FIRST_REQUEST_GRACE_SECONDS = 2.0
# How long a new connection counts against the worker's threads before its request head
# is complete: long enough that a burst (heads sent at once) spreads over the workers,
# short enough that clients trickling their heads do not take the capacity.
_CAPACITY_GRACE_SECONDS = 0.005
_CLOSE_TIMEOUT_SECONDS = 2.0
_ACCEPT_BATCH = 128
_ACCEPT_RETRY_SECONDS = 0.5
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

_NEW, _IDLE, _BUSY = 0, 1, 2


class _TrackingDelegate(httputil.HTTPMessageDelegate):
    """Forwarding delegate (tornado applications) that reports when a request head arrived."""

    def __init__(
        self, inner: httputil.HTTPMessageDelegate, server: DrainingServer, server_conn: object
    ) -> None:
        self._inner = inner
        self._server = server
        self._server_conn = server_conn

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self._server.mark_busy(self._server_conn)
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._inner.finish()

    def on_connection_close(self) -> None:
        self._inner.on_connection_close()


class DrainingServer(HTTPServer):
    """HTTPServer that accepts only while it has capacity and tracks requests in flight.

    Constructed like :class:`~tornado.httpserver.HTTPServer`, with keyword arguments of
    its own: ``worker`` (the gunicorn worker), ``executor`` (the WSGI thread pool, when
    the app is a :class:`~.container.Container`), ``head_timeout`` (seconds a request
    head may take to arrive) and ``silence_limit`` (seconds a client may send or read
    nothing in the middle of a request).
    """

    def initialize(  # type: ignore[override]
        self,
        app: Any,
        *,
        worker: Any,
        executor: ThreadPoolExecutor | None = None,
        head_timeout: float | None = None,
        silence_limit: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().initialize(app, idle_connection_timeout=head_timeout, **kwargs)
        self.worker = worker
        self.container = app if isinstance(app, Container) else None
        #: the WSGI requests' slots: those waiting on their clients do not count as load
        self.slots = self.container.slots if self.container is not None else None
        self.executor = executor
        self.head_timeout = head_timeout
        self.silence_limit = silence_limit
        #: set when the worker drains: responses from then on close their connection
        self.draining = False
        self.on_request_done: Callable[[], None] | None = None
        self._keep_alive = not kwargs.get("no_keep_alive", False)
        self._states: dict[object, int] = {}
        self._new_since: dict[object, float] = {}
        #: new connections that sent part of a head (not counted against the threads)
        self._heard: set[object] = set()
        # tornado connections accepted whose serving loop has not asked for a delegate yet
        self._unstarted = 0
        self._listeners: dict[int, tuple[socket.socket, Any]] = {}
        self._capacity: int | None = None
        self._accepting = False
        self._tasks: set[asyncio.Future[None]] = set()

    def keep_alive_allowed(self) -> bool:
        """Whether a response may leave its connection open for another request."""
        return self._keep_alive and not self.draining and bool(self.worker.alive)

    # -- connection states ----------------------------------------------------------------

    def _track(self, conn: object) -> None:
        self._states[conn] = _NEW
        self._new_since[conn] = time.monotonic()
        # Once its grace is over the connection no longer counts against the threads.
        IOLoop.current().call_later(_CAPACITY_GRACE_SECONDS + 0.001, self.update_accepting)

    def heard(self, conn: object) -> None:
        """``conn`` sent its first bytes: a head under way no longer counts against the
        threads (a drain still waits for it)."""
        since = self._new_since.get(conn)
        if since is not None and self._states.get(conn) == _NEW:
            self._heard.add(conn)
            self.update_accepting()

    def mark_busy(self, conn: object) -> None:
        """A request head arrived on ``conn``."""
        self._states[conn] = _BUSY
        self._new_since.pop(conn, None)
        self._heard.discard(conn)

    def mark_idle(self, conn: object) -> None:
        """The request on ``conn`` has been answered."""
        if self._states.get(conn) == _BUSY:
            self._states[conn] = _IDLE
            self._request_done()

    def forget(self, conn: object) -> None:
        """``conn`` is closed."""
        self._new_since.pop(conn, None)
        self._heard.discard(conn)
        if self._states.pop(conn, None) == _BUSY:
            self._request_done()
        else:
            self.update_accepting()

    def _request_done(self) -> None:
        if self.on_request_done is not None:
            self.on_request_done()
        self.update_accepting()

    def in_flight(self) -> int:
        """Requests whose head has arrived and whose response is not yet written."""
        return sum(1 for state in self._states.values() if state == _BUSY)

    def awaiting_first_request(self, grace: float, *, heard: bool = True) -> int:
        """Connections accepted less than ``grace`` seconds ago that sent no request yet
        (with ``heard=False``, only those that sent nothing at all)."""
        cutoff = time.monotonic() - grace
        new = self._new_since.items()
        waiting = sum(1 for c, since in new if since > cutoff and (heard or c not in self._heard))
        return self._unstarted + waiting

    def load(self) -> int:
        """Requests being served or just about to be (what counts against the threads)."""
        away = self.slots.away if self.slots is not None else 0
        return self.in_flight() - away + self.awaiting_first_request(
            _CAPACITY_GRACE_SECONDS, heard=False
        )

    def drain_load(self) -> int:
        """What a drain waits for: requests in flight, and connections accepted in the
        last 2 s whose request head may still be on its way."""
        return self.in_flight() + self.awaiting_first_request(_FIRST_REQUEST_GRACE_SECONDS)

    # -- tornado applications: tornado's own HTTP/1.1 connections --------------------------

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        # The connection's serving loop only calls start_request on a later
        # loop iteration; count it meanwhile so it is not mistaken for idle.
        self._unstarted += 1
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        # The serving loop asks for the next delegate only after the previous
        # response has been fully written, so a busy connection is done now.
        if server_conn not in self._states:
            self._unstarted = max(0, self._unstarted - 1)
            self._track(server_conn)
        else:
            self.mark_idle(server_conn)
        inner = super().start_request(server_conn, request_conn)
        return _TrackingDelegate(inner, self, server_conn)

    def on_close(self, server_conn: object) -> None:
        super().on_close(server_conn)
        self.forget(server_conn)

    # -- accepting --------------------------------------------------------------------------

    def listen_on(self, sockets: list[Any], capacity: int | None) -> None:
        """Accept on ``sockets``, pausing while ``capacity`` requests are in progress."""
        self._capacity = capacity
        io_loop = IOLoop.current()
        for sock in sockets:
            sock.setblocking(False)
            self._listeners[sock.fileno()] = (sock, sock.getsockname())
            io_loop.add_handler(sock.fileno(), self._on_listener_ready, IOLoop.READ)
        self._accepting = True
        self.update_accepting()

    def update_accepting(self) -> None:
        """Watch the listeners only while a request slot is free."""
        if not self._listeners:
            return
        wanted = self._capacity is None or self.load() < self._capacity
        if wanted != self._accepting:
            self._accepting = wanted
            io_loop = IOLoop.current()
            for fd in self._listeners:
                io_loop.update_handler(fd, IOLoop.READ if wanted else 0)

    def _on_listener_ready(self, fd: int, events: int) -> None:
        listener = self._listeners.get(fd)
        # Taking only the free slots leaves the rest in the shared backlog,
        # where workers with idle threads pick them up.
        free = _ACCEPT_BATCH if self._capacity is None else self._capacity - self.load()
        while listener is not None and free > 0 and self._accept_one(*listener):
            free -= 1
        self.update_accepting()

    def _accept_one(self, sock: Any, sockname: Any) -> bool:
        """Accept and start serving one queued connection; False once none is left."""
        while True:
            try:
                conn, address = sock.accept()
            except ConnectionAbortedError:
                continue
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    # Out of descriptors: pause instead of spinning on a
                    # listener that stays readable.
                    self._pause_accepting(_ACCEPT_RETRY_SECONDS)
                return False
            if self.container is None:
                # tornado's own accept callback, so TLS wrapping applies as usual.
                self._handle_connection(conn, address)
            else:
                self._serve_wsgi(conn, address, sockname)
            return True

    def _serve_wsgi(self, sock: socket.socket, address: Any, sockname: Any) -> None:
        connection = Connection(self, address, sockname)
        self._track(connection)
        context = self.ssl_options if isinstance(self.ssl_options, ssl.SSLContext) else None
        task = asyncio.ensure_future(connection.run(sock, context))
        # The loop keeps only weak references to tasks.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pause_accepting(self, seconds: float) -> None:
        if self._accepting:
            self._accepting = False
            io_loop = IOLoop.current()
            for fd in self._listeners:
                io_loop.update_handler(fd, 0)
            io_loop.call_later(seconds, self.update_accepting)

    # -- draining -----------------------------------------------------------------------------

    def listening_sockets(self) -> list[Any]:
        """The listeners this server accepts from."""
        return [sock for sock, _ in self._listeners.values()]

    def stop_listening(self, backlog: int) -> None:
        """Close the listeners, first taking up to ``backlog`` connections queued on each."""
        io_loop = IOLoop.current()
        for fd, (sock, sockname) in list(self._listeners.items()):
            for _ in range(backlog):
                if not self._accept_one(sock, sockname):
                    break
            io_loop.remove_handler(fd)
            sock.close()
        self._listeners.clear()

    async def close_connections(self) -> None:
        """Close every open connection, waiting briefly for their loops to end."""
        closing = [
            asyncio.ensure_future(conn.close())
            for conn in list(self._states)
            if isinstance(conn, (Connection, HTTP1ServerConnection))
        ]
        if closing:
            await asyncio.wait(closing, timeout=_CLOSE_TIMEOUT_SECONDS)
