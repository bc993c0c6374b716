"""Tornado worker with a WSGI thread pool, graceful drain and gunicorn access logging."""

from __future__ import annotations

import asyncio
import datetime
import errno
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import tornado
import tornado.web
from gunicorn import __version__ as gunicorn_version
from gunicorn.glogging import Logger
from gunicorn.sock import ssl_context
from gunicorn.workers import gtornado
from tornado import httputil, iostream
from tornado.http1connection import HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.wsgi import WSGIContainer

from servekit.backends.gunicorn.workers.drain import (
    SIGNALLED_WAIT_SECONDS,
    StopClock,
    server_stopping,
)

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

__all__ = ["TornadoWorker"]

_SERVER_HEADER = f"TornadoServer/{tornado.version} (Gunicorn/{gunicorn_version})"
_ERROR_BODY = b"Internal Server Error\n"
_DRAIN_POLL_SECONDS = 0.05
# How long a drain waits for a connection that was accepted but has not sent a
# complete request head yet (e.g. one just taken from the listen backlog).
_FIRST_REQUEST_GRACE_SECONDS = 2.0
_CLOSE_TIMEOUT_SECONDS = 2.0
_ACCEPT_BATCH = 128
_ACCEPT_RETRY_SECONDS = 0.5
_GATE_POLL_SECONDS = 0.01

_NEW, _IDLE, _BUSY = 0, 1, 2

Headers = list[tuple[str, str]]


class _AccessRequest:
    """Request view carrying what gunicorn's access logger reads."""

    __slots__ = ("headers", "method", "path", "query", "uri", "version")

    def __init__(self, request: httputil.HTTPServerRequest, headers: Headers) -> None:
        self.method = request.method
        self.uri = request.uri
        self.path = request.path
        self.query = request.query
        self.version = _version_tuple(request.version)
        self.headers = headers


class _AccessResponse:
    """Response view carrying what gunicorn's access logger reads."""

    __slots__ = ("headers", "response_length", "sent", "status", "status_code")

    def __init__(self, code: int, reason: str, headers: Headers, sent: int) -> None:
        self.status = f"{code} {reason}"
        self.status_code = code
        self.headers = headers
        self.sent = sent
        self.response_length = sent


def _version_tuple(version: str) -> tuple[int, int]:
    """Turn ``HTTP/1.1`` into ``(1, 1)`` like gunicorn's request objects."""
    major, _, minor = version.partition("/")[2].partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return 1, 1


def _fallback_environ(request: httputil.HTTPServerRequest) -> dict[str, Any]:
    """The environ keys gunicorn's access log needs, for requests that never got one."""
    return {
        "REQUEST_METHOD": request.method,
        "RAW_URI": request.uri,
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query,
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": request.remote_ip,
    }


class _ThreadedWSGIContainer(WSGIContainer):
    """WSGIContainer that runs the app on an executor and writes gunicorn's access log."""

    def __init__(self, app: WSGIApplication, executor: ThreadPoolExecutor, log: Any) -> None:
        super().__init__(app, executor=executor)
        self._gunicorn_log = log
        # A logger that overrides access() (statsd, custom classes) wants every
        # request even when no access log file is configured.
        self._access_always = getattr(type(log), "access", None) is not Logger.access

    def environ(self, request: httputil.HTTPServerRequest) -> dict[str, Any]:
        """Build the WSGI environ, adding the keys gunicorn's environ also has."""
        environ = super().environ(request)
        environ["RAW_URI"] = request.uri
        address = getattr(request.connection, "context", None)
        address = getattr(address, "address", None)
        if isinstance(address, tuple) and len(address) >= 2:
            environ["REMOTE_PORT"] = str(address[1])
        return environ

    def _access_wanted(self) -> bool:
        """Tell whether this request's access-log record would be used at all."""
        return self._access_always or bool(getattr(self._gunicorn_log, "access_log_enabled", True))

    def _call_app(self, environ: WSGIEnvironment) -> tuple[str, Headers, bytes]:
        """Run the app and its response iterable to completion on an executor thread."""
        started: list[tuple[str, Headers]] = []
        body: list[bytes] = []

        def start_response(
            status: str, headers: Headers, exc_info: OptExcInfo | None = None, /
        ) -> Any:
            # Nothing is sent before the app returns, so a later call (with
            # exc_info) may always replace the status and headers.
            started[:] = [(status, headers)]
            return body.append

        result = self.wsgi_application(environ, start_response)
        try:
            body.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("WSGI app did not call start_response")
        status, headers = started[0]
        return status, headers, b"".join(body)

    async def handle_request(self, request: httputil.HTTPServerRequest) -> None:
        """Serve one request through the app and log it."""
        log_access = self._access_wanted()
        # environ() pops Content-Type/Length from request.headers; keep a copy first.
        req_headers = [(k.upper(), v) for k, v in request.headers.get_all()] if log_access else []
        environ: dict[str, Any] | None = None
        loop = asyncio.get_running_loop()
        try:
            # Inside the try: tornado's environ() raises on e.g. "Host: a:b".
            environ = self.environ(request)
            status, app_headers, body = await loop.run_in_executor(
                self.executor, self._call_app, environ
            )
            code_text, _, reason = status.partition(" ")
            code = int(code_text)
            headers, sent = self._write(request, code, reason, app_headers, body)
        except httputil.HTTPOutputError:
            # Body length disagreed with Content-Length; tornado closed the stream.
            self._gunicorn_log.exception(
                "Error writing response to %s %s", request.method, request.uri
            )
            return
        except Exception:
            self._gunicorn_log.exception(
                "Error handling request %s %s", request.method, request.uri
            )
            code, reason = 500, "Internal Server Error"
            error_headers = [("Content-Type", "text/plain; charset=utf-8")]
            headers, sent = self._write(request, code, reason, error_headers, _ERROR_BODY)
        if log_access:
            self._gunicorn_log.access(
                _AccessResponse(code, reason, headers, sent),
                _AccessRequest(request, req_headers),
                environ if environ is not None else _fallback_environ(request),
                datetime.timedelta(seconds=request.request_time()),
            )

    def _write(
        self,
        request: httputil.HTTPServerRequest,
        code: int,
        reason: str,
        app_headers: Headers,
        body: bytes,
    ) -> tuple[Headers, int]:
        """Send a complete buffered response; return the headers sent and body bytes sent."""
        headers = list(app_headers)
        names = {name.lower() for name, _ in headers}
        bodyless = code in (204, 304) or 100 <= code < 200
        if not bodyless:
            if "content-length" not in names:
                headers.append(("Content-Length", str(len(body))))
            if "content-type" not in names:
                headers.append(("Content-Type", "text/html; charset=UTF-8"))
        if "server" not in names:
            headers.append(("Server", _SERVER_HEADER))
        if "date" not in names:
            headers.append(("Date", httputil.format_timestamp(time.time())))
        header_obj = httputil.HTTPHeaders()
        for name, value in headers:
            header_obj.add(name, value)
        send_body = bool(body) and not bodyless and request.method != "HEAD"
        connection = request.connection
        assert connection is not None
        connection.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", code, reason),
            header_obj,
            chunk=body if send_body else None,
        )
        connection.finish()
        return headers, len(body) if send_body else 0


class _TrackingDelegate(httputil.HTTPMessageDelegate):
    """Forwarding delegate that reports when a request head has arrived."""

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        server: _DrainingHTTPServer,
        server_conn: object,
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


class _DrainingHTTPServer(HTTPServer):
    """HTTPServer that tracks requests in flight and accepts only while it has capacity."""

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.conn_states: dict[object, int] = {}
        self.unstarted = 0
        self.on_request_done: Callable[[], None] | None = None
        self._new_since: dict[object, float] = {}
        self._listeners: dict[int, Any] = {}
        self._capacity: int | None = None
        self._accepting = False

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        # The connection's serving loop only calls start_request on a later
        # loop iteration; count it meanwhile so it is not mistaken for idle.
        self.unstarted += 1
        super().handle_stream(stream, address)

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        # The serving loop asks for the next delegate only after the previous
        # response has been fully written, so a busy connection is done now.
        state = self.conn_states.get(server_conn)
        if state is None:
            self.unstarted = max(0, self.unstarted - 1)
            self.conn_states[server_conn] = _NEW
            self._new_since[server_conn] = time.monotonic()
        elif state == _BUSY:
            self.conn_states[server_conn] = _IDLE
            self._request_done()
        inner = super().start_request(server_conn, request_conn)
        return _TrackingDelegate(inner, self, server_conn)

    def mark_busy(self, server_conn: object) -> None:
        """Record that a request head arrived on ``server_conn``."""
        self.conn_states[server_conn] = _BUSY
        self._new_since.pop(server_conn, None)

    def on_close(self, server_conn: object) -> None:
        self._new_since.pop(server_conn, None)
        was_busy = self.conn_states.pop(server_conn, None) == _BUSY
        super().on_close(server_conn)
        if was_busy:
            self._request_done()
        else:
            self.update_accepting()

    def _request_done(self) -> None:
        if self.on_request_done is not None:
            self.on_request_done()
        self.update_accepting()

    def in_flight(self) -> int:
        """Requests whose head has arrived and whose response is not yet written."""
        return sum(1 for state in self.conn_states.values() if state == _BUSY)

    def awaiting_first_request(self) -> int:
        """Connections accepted less than the grace period ago that sent no request yet."""
        cutoff = time.monotonic() - _FIRST_REQUEST_GRACE_SECONDS
        return self.unstarted + sum(1 for since in self._new_since.values() if since > cutoff)

    def load(self) -> int:
        """Requests being served or just about to be."""
        return self.in_flight() + self.awaiting_first_request()

    def listen_on(self, sockets: list[Any], capacity: int | None) -> None:
        """Accept on ``sockets``, pausing while ``capacity`` requests are in progress."""
        self._capacity = capacity
        io_loop = IOLoop.current()
        for sock in sockets:
            sock.setblocking(False)
            self._listeners[sock.fileno()] = sock
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
        sock = self._listeners.get(fd)
        # Taking only the free slots leaves the rest in the shared backlog,
        # where workers with idle threads pick them up.
        free = _ACCEPT_BATCH if self._capacity is None else self._capacity - self.load()
        while sock is not None and free > 0 and self._accept_one(sock):
            free -= 1
        self.update_accepting()

    def _accept_one(self, sock: Any) -> bool:
        """Accept and start serving one queued connection; False once none is left."""
        while True:
            try:
                conn, address = sock.accept()
            except ConnectionAbortedError:
                continue
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: pause instead of spinning on a
                    # listener that stays readable.
                    self._pause_accepting(_ACCEPT_RETRY_SECONDS)
                return False
            # tornado's own accept callback, so TLS wrapping applies as usual.
            self._handle_connection(conn, address)
            return True

    def _pause_accepting(self, seconds: float) -> None:
        if self._accepting:
            self._accepting = False
            io_loop = IOLoop.current()
            for fd in self._listeners:
                io_loop.update_handler(fd, 0)
            io_loop.call_later(seconds, self.update_accepting)

    def listening_sockets(self) -> list[Any]:
        """The listeners this server accepts from."""
        return list(self._listeners.values())

    def stop_listening(self, backlog: int) -> None:
        """Close the listeners, first taking up to ``backlog`` connections queued on each."""
        io_loop = IOLoop.current()
        for fd, sock in list(self._listeners.items()):
            for _ in range(backlog):
                if not self._accept_one(sock):
                    break
            io_loop.remove_handler(fd)
            sock.close()
        self._listeners.clear()

    async def close_connections(self) -> None:
        """Close every open connection, waiting briefly for their loops to end."""
        closing = [
            asyncio.ensure_future(conn.close())
            for conn in list(self.conn_states)
            if isinstance(conn, HTTP1ServerConnection)
        ]
        if closing:
            await asyncio.wait(closing, timeout=_CLOSE_TIMEOUT_SECONDS)


def _skip_joining_request_threads() -> None:
    """Make interpreter shutdown exit at once instead of waiting for stuck request threads."""

    def exit_now() -> None:
        logging.shutdown()
        os._exit(0)

    # concurrent.futures joins every executor thread from a threading-atexit
    # hook; those run in reverse order, so one registered now runs first. By
    # then gunicorn's worker_exit hook has run. Without it a worker whose
    # requests outlived graceful_timeout lingers until the arbiter's timeout.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(exit_now)


class TornadoWorker(StopClock, gtornado.TornadoWorker):  # type: ignore[misc]
    """Gunicorn tornado worker: threaded WSGI, graceful drain, gunicorn access log."""

    _shutdown: asyncio.Event

    def run(self) -> None:
        """Serve until told to stop, then drain in-flight requests and exit."""
        if asyncio.run(self._serve()):
            _skip_joining_request_threads()

    def _make_app(self) -> tuple[Any, ThreadPoolExecutor | None]:
        """Wrap a plain WSGI callable; pass tornado applications through untouched."""
        app = self.wsgi
        if isinstance(app, (WSGIContainer, tornado.web.Application)):
            return app, None
        executor = ThreadPoolExecutor(self._threads(), thread_name_prefix="servekit-wsgi")
        return _ThreadedWSGIContainer(app, executor, self.log), executor

    def _head_timeout(self) -> float | None:
        for seconds in (self.cfg.keepalive, self.cfg.timeout):
            if seconds and seconds > 0:
                return float(seconds)
        return None

    def _threads(self) -> int:
        return max(1, int(self.cfg.threads))

    async def _serve(self) -> bool:
        self.ioloop = IOLoop.current()
        self._shutdown = asyncio.Event()
        self.server_alive = False
        if "h2" in self.cfg.http_protocols:
            self.log.warning(
                "HTTP/2 is not supported by the tornado worker; falling back to HTTP/1.1 only."
            )
        app, executor = self._make_app()
        server = _DrainingHTTPServer(
            app,
            # The base class sets server.no_keep_alive after construction, which
            # tornado never reads; it has to go in through the constructor.
            no_keep_alive=self.cfg.keepalive <= 0,
            # How long a request head may take to arrive, on a new connection or a
            # kept-alive one: tornado's default is an hour, so a client that sends
            # half a head (or a kept-alive one that stays idle) held its connection
            # that long. keepalive, as in gunicorn's async workers, else timeout.
            idle_connection_timeout=self._head_timeout(),
            ssl_options=ssl_context(self.cfg) if self.cfg.is_ssl else None,
        )
        server.on_request_done = self._on_request_done
        self.server = server
        # Only the thread pool bounds concurrency; tornado apps keep tornado's
        # accept-everything behaviour.
        server.listen_on(list(self.sockets), None if executor is None else self._threads())
        self.server_alive = True

        # gunicorn's signal handlers only flip self.alive; the wakeup byte they
        # leave in PIPE wakes the loop so a TERM is acted on at once.
        wakeup_fd = self.PIPE[0] if self.PIPE else None
        if wakeup_fd is not None:
            self.ioloop.add_handler(wakeup_fd, self._on_wakeup, IOLoop.READ)
        watchdog = PeriodicCallback(self.watchdog, 1000)
        self.callbacks = [watchdog]
        watchdog.start()
        timed_out = False
        try:
            self._check_alive()
            await self._shutdown.wait()
            timed_out = await self._drain(server)
        finally:
            watchdog.stop()
            if wakeup_fd is not None:
                self.ioloop.remove_handler(wakeup_fd)
            if executor is not None:
                executor.shutdown(wait=not timed_out, cancel_futures=True)
        return timed_out

    async def _drain(self, server: _DrainingHTTPServer) -> bool:
        """Stop listening, finish in-flight requests; return True if time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.cfg.graceful_timeout)
        if await self._stop_announced():
            # servekit's master closed the listeners' gate: the queue only shrinks.
            # Keep accepting (while threads are free) until it stays empty.
            watch = self.backlog_watch(server.listening_sockets())
            while watch.poll() is not None:
                await asyncio.sleep(_GATE_POLL_SECONDS)
        server.stop_listening(max(0, int(self.cfg.backlog)))
        self.server_alive = False
        # Read per request head by tornado, so requests that arrive on open
        # keep-alive connections from now on get "Connection: close".
        server.conn_params.no_keep_alive = True
        while server.load() and loop.time() < deadline:
            await asyncio.sleep(_DRAIN_POLL_SECONDS)
        in_flight = server.in_flight()
        if in_flight:
            self.log.warning(
                "Graceful timeout (%ss) reached with %d request(s) in flight",
                self.cfg.graceful_timeout,
                in_flight,
            )
        await server.close_connections()
        return bool(in_flight)

    async def _stop_announced(self) -> bool:
        """Whether the whole server stops (see :func:`servekit.backends.gunicorn.workers.drain.stop_announced`)."""
        if self._stop_signalled_at is None or server_stopping():
            return server_stopping()
        end = self._stop_signalled_at + SIGNALLED_WAIT_SECONDS
        while not server_stopping() and time.monotonic() < end:
            await asyncio.sleep(_GATE_POLL_SECONDS)
        return server_stopping()

    def _on_wakeup(self, fd: int, events: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:  # BlockingIOError once the pipe is empty
            pass
        self._check_alive()

    def _on_request_done(self) -> None:
        self.handle_request()
        self._check_alive()

    def _check_alive(self) -> None:
        if not self.alive:
            self._shutdown.set()

    def watchdog(self) -> None:
        """Heartbeat the arbiter (also while draining) and notice a lost parent."""
        self.notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False
        server = getattr(self, "server", None)
        if isinstance(server, _DrainingHTTPServer):
            # A silent connection stops counting as load after the grace period.
            server.update_accepting()
        self._check_alive()
