"""The gunicorn worker loop of the tornado worker: serve, heartbeat, drain, exit."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.web
from gunicorn.sock import ssl_context
from gunicorn.workers import gtornado
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.wsgi import WSGIContainer

from servekit.backends.gunicorn.metering import away_meter
from servekit.backends.gunicorn.workers.drain import (
    SIGNALLED_WAIT_SECONDS,
    StopClock,
    server_stopping,
)
from servekit.backends.gunicorn.workers.limits import Refuses413, current
from servekit.backends.gunicorn.workers.slots import Slots
from servekit.backends.gunicorn.workers.tornado.container import Container
from servekit.backends.gunicorn.workers.tornado.server import DrainingServer

__all__ = ["TornadoWorker"]

_DRAIN_POLL_SECONDS = 0.05
_GATE_POLL_SECONDS = 0.01


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


class TornadoWorker(StopClock, Refuses413, gtornado.TornadoWorker):  # type: ignore[misc]
    """Gunicorn tornado worker: the WSGI app on a thread pool, requests read and answered
    as gunicorn's sync worker does, responses streamed, graceful drain, gunicorn access log."""

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
        # Room for the requests that wait on their clients without a slot (.slots).
        threads = self._threads()
        loop = asyncio.get_running_loop()
        slots = Slots(
            threads, lambda: loop.call_soon_threadsafe(self._slot_freed), meter=away_meter()
        )
        executor = ThreadPoolExecutor(slots.pool_size, thread_name_prefix="servekit-wsgi")
        return Container(app, self, slots), executor

    def _slot_freed(self) -> None:
        server = getattr(self, "server", None)
        if isinstance(server, DrainingServer):
            server.update_accepting()

    def _head_timeout(self) -> float | None:
        # The deadline of a request head, from the accept or the previous response
        # (servekit's header_timeout; a kept-alive connection also waits keepalive at most).
        return float(current().header_timeout)

    def _silence_limit(self) -> float | None:
        # How long a client may send or read nothing in the middle of a request: the
        # silent-client limit of servekit's sync and gthread workers.
        seconds = self.cfg.timeout
        return float(seconds) if seconds and seconds > 0 else None

    def _threads(self) -> int:
        return max(1, int(self.cfg.threads))

    def _make_server(self, app: Any, executor: ThreadPoolExecutor | None) -> DrainingServer:
        server = DrainingServer(
            app,
            worker=self,
            executor=executor,
            head_timeout=self._head_timeout(),
            silence_limit=self._silence_limit(),
            # The base class sets server.no_keep_alive after construction, which
            # tornado never reads; it has to go in through the constructor.
            no_keep_alive=self.cfg.keepalive <= 0,
            ssl_options=ssl_context(self.cfg) if self.cfg.is_ssl else None,
        )
        server.on_request_done = self._on_request_done
        return server

    async def _serve(self) -> bool:
        self.ioloop = IOLoop.current()
        self._shutdown = asyncio.Event()
        self.server_alive = False
        if "h2" in self.cfg.http_protocols:
            self.log.warning(
                "HTTP/2 is not supported by the tornado worker; falling back to HTTP/1.1 only."
            )
        app, executor = self._make_app()
        server = self.server = self._make_server(app, executor)
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
                # Never wait here: a request thread still running needs this loop to
                # send its response, and the loop would be blocked in the wait.
                executor.shutdown(wait=False, cancel_futures=True)
        return timed_out

    async def _drain(self, server: DrainingServer) -> bool:
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
        # Requests that arrive on open keep-alive connections from now on get
        # "Connection: close".
        server.draining = True
        server.conn_params.no_keep_alive = True
        while server.drain_load() and loop.time() < deadline:
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
        if isinstance(server, DrainingServer):
            # A silent connection stops counting as load after the grace period.
            server.update_accepting()
        self._check_alive()
