"""Eventlet worker for gunicorn, which stopped shipping one in release 26.

Use it as ``worker_class = "servekit.backends.gunicorn.workers.eventlet.EventletWorker"``.
This module is the worker loop (accept, serve, heartbeat, drain); ``green.py`` holds
what adapts eventlet's green sockets to gunicorn's async worker base.
Importing this module has no side effects: eventlet is imported, and the
process monkey-patched, only inside the forked worker.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
import warnings
from functools import partial
from typing import TYPE_CHECKING, Any

from gunicorn import util
from gunicorn.sock import ssl_context
from gunicorn.workers.base_async import AsyncWorker

from servekit.backends.gunicorn.workers.drain import StopClock
from servekit.backends.gunicorn.workers.eventlet.green import (
    ListenerAddress,
    PatchLogHandler,
    green_sendfile,
)
from servekit.backends.gunicorn.workers.paced import PacedAsync

if TYPE_CHECKING:
    import ssl
    from types import FrameType

    from eventlet.greenio import GreenSocket
    from eventlet.greenpool import GreenPool
    from eventlet.greenthread import GreenThread

__all__ = ["EventletWorker"]

# accept() failures that concern a single connection; just accept the next one.
_RETRY_ACCEPT_ERRNOS = frozenset({errno.EAGAIN, errno.ECONNABORTED, errno.EPROTO, errno.EINTR})
# accept() failures caused by exhausted resources; back off instead of spinning.
_RESOURCE_ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# How long the shutdown drain waits for one more queued connection.
_DRAIN_WAIT = 0.01
# Upper bound on how long the main loop sleeps between heartbeats.
_MAX_TICK = 1.0


class EventletWorker(StopClock, PacedAsync, AsyncWorker):  # type: ignore[misc]
    """Gunicorn worker that serves each connection in an eventlet green thread.

    Up to ``worker_connections`` connections are served at once per worker,
    and the main green thread sends the arbiter a heartbeat at least once per
    quarter of ``timeout`` (and every second), so a request that blocks the
    hub gets the worker killed as with any other worker class.
    SIGTERM stops accepting, serves connections already queued on the
    listener, and waits up to ``graceful_timeout`` for in-flight requests;
    SIGINT and SIGQUIT exit at once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._quick_exit = False
        self._abort_exit = False
        self._reopen_logs = False
        self._ssl_context: ssl.SSLContext | None = None
        self._wsgi_local: Any = None

    # -- process setup -------------------------------------------------------

    def init_process(self) -> None:
        """Patch the freshly forked worker, then let gunicorn load the app and run."""
        self.patch()
        super().init_process()

    def patch(self) -> None:
        """Give this process its own hub and monkey-patch the standard library."""
        # eventlet warns on import that it is in bugfix-only mode; servekit says so
        # once, in `explain`, instead of on every worker boot.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
            import eventlet
            import eventlet.hubs

        # Drop any hub inherited from the master (e.g. built by a preloaded
        # app): its epoll descriptor is shared with every sibling worker.
        eventlet.hubs.use_hub()
        # Patching after the fork makes eventlet walk every imported module for
        # locks to replace; it logs (through an unregistered logger, so Python's
        # last-resort handler) a traceback for objects that refuse inspection,
        # such as pydantic's placeholders, and carries on. Route that to debug.
        previous = logging.lastResort
        logging.lastResort = PatchLogHandler()
        try:
            eventlet.monkey_patch()
        finally:
            logging.lastResort = previous

    # -- signals ---------------------------------------------------------------
    # Handlers run in whatever green thread the signal interrupts, possibly the
    # hub itself, where switching is forbidden. They only set flags; the
    # wake-up pipe gunicorn registers with signal.set_wakeup_fd() then rouses
    # the main green thread, which acts on them.

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """Ask the main green thread to exit without waiting for requests."""
        self.alive = False
        self._quick_exit = True

    def handle_usr1(self, sig: int, frame: FrameType | None) -> None:
        """Ask the main green thread to reopen the log files."""
        self._reopen_logs = True

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """Exit after the arbiter's timeout, even if a request swallows the SystemExit."""
        # The SystemExit raised here interrupts whatever blocks the hub, but
        # AsyncWorker.handle() turns it into a 500 if that was a request, so
        # the main green thread finishes the job.
        self._abort_exit = True
        super().handle_abort(sig, frame)

    # -- heartbeat -------------------------------------------------------------

    def notify(self) -> None:
        """Tell the arbiter this worker is alive; shut down if the arbiter is gone."""
        super().notify()
        if self.alive and self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False

    def _tick(self) -> float:
        """Return the heartbeat period: at most half the timeout gunicorn gave this worker."""
        # self.timeout is already half of the arbiter's --timeout; 0 disables it.
        if self.timeout <= 0:
            return _MAX_TICK
        return float(max(0.01, min(_MAX_TICK, self.timeout / 2)))

    def _wait_for_signal(self, seconds: float) -> None:
        """Sleep up to *seconds*, returning early when a signal arrives."""
        import eventlet
        from eventlet.hubs import trampoline

        with eventlet.Timeout(seconds, False):
            trampoline(self.PIPE[0], read=True)
            # Readable, so this does not block; drained so it does not fill up.
            os.read(self.PIPE[0], 4096)

    def _act_on_signals(self) -> None:
        """Carry out what the signal handlers asked for."""
        if self._abort_exit:
            sys.exit(1)
        if self._quick_exit:
            self.cfg.worker_int(self)
            sys.exit(0)
        if self._reopen_logs:
            self._reopen_logs = False
            self.log.reopen_files()

    # -- main loop ---------------------------------------------------------------

    def run(self) -> None:
        """Accept and serve connections until told to stop, then shut down gracefully."""
        import eventlet
        import eventlet.wsgi

        self._wsgi_local = getattr(eventlet.wsgi, "WSGI_LOCAL", None)
        if self.cfg.is_ssl:
            self._ssl_context = ssl_context(self.cfg)

        tick = self._tick()
        pool = eventlet.GreenPool(self.worker_connections)
        acceptors = [
            eventlet.spawn(self._accept_loop, listener, pool, tick) for listener in self.sockets
        ]

        while self.alive:
            self.notify()
            self._wait_for_signal(tick)
            self._act_on_signals()

        self._act_on_signals()
        self._shut_down(acceptors, pool, tick)

    def _shut_down(self, acceptors: list[GreenThread], pool: GreenPool, tick: float) -> None:
        """Wait for the accept loops and in-flight requests, up to ``graceful_timeout``."""
        import eventlet

        deadline = time.monotonic() + self.cfg.graceful_timeout
        while pool.running() or not all(acceptor.dead for acceptor in acceptors):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                for greenlet in [*acceptors, *pool.coroutines_running]:
                    eventlet.kill(greenlet)
                return
            self.notify()
            with eventlet.Timeout(min(tick, remaining), False):
                for acceptor in acceptors:
                    acceptor.wait()
                pool.waitall()
            self._act_on_signals()

    def _accept_loop(self, listener: Any, pool: GreenPool, tick: float) -> None:
        """Accept connections from one listener into *pool* until shutdown."""
        import eventlet
        from eventlet.greenio import GreenSocket

        address = ListenerAddress(listener.getsockname())
        sock = GreenSocket(listener.sock)
        try:
            # The timeout only makes the loop notice shutdown; it is not an error.
            sock.settimeout(tick)
            while self.alive:
                # Wait for a free slot before accepting, so that a saturated
                # worker leaves new connections to its siblings.
                with pool.sem:
                    pass
                if not self.alive:
                    break
                try:
                    client, addr = sock.accept()
                except TimeoutError:
                    continue
                except OSError as exc:
                    if exc.errno in _RESOURCE_ACCEPT_ERRNOS:
                        self.log.error("accept() failed: %s", exc)
                        eventlet.sleep(tick)
                    elif exc.errno not in _RETRY_ACCEPT_ERRNOS:
                        raise
                    continue
                pool.spawn_n(self._serve, address, client, addr)
                # Yield before the next accept: without it one worker takes a whole
                # burst of connections (measured: one core busy of two, 149 vs 358
                # req/s CPU-bound with 2 workers) while its siblings sit idle.
                eventlet.sleep(0)
            self._drain_backlog(listener, address, sock, pool)
        except Exception:
            self.log.exception("Accept loop for %s failed, stopping worker", listener)
            self.alive = False
        finally:
            util.close(sock)

    def _drain_backlog(
        self, listener: Any, address: ListenerAddress, sock: GreenSocket, pool: GreenPool
    ) -> None:
        """Serve the connections queued on the listener when shutdown began.

        Their clients may have sent a request already; closing the listener
        with them still queued would reset those connections. When servekit's
        master stops the whole server it has closed the listener's gate, so the
        queue only shrinks: accept until it stays empty. Otherwise (this worker
        alone is stopping, or plain gunicorn runs it) take what is queued now.
        Waiting for a free slot is bounded by the graceful timeout, when the
        main green thread kills this one.
        """
        import eventlet

        if self.stop_announced(eventlet.sleep):
            self._drain_gated(listener, address, sock, pool)
            return
        # gunicorn reads the accept queue length from TCP_INFO on Linux and
        # returns 0 or -1 when it cannot tell; then just try a pool's worth.
        queued = getattr(listener, "get_backlog", lambda: -1)() or -1
        limit = queued if queued > 0 else self.worker_connections
        sock.settimeout(_DRAIN_WAIT)
        for _ in range(limit):
            with pool.sem:
                pass
            try:
                client, addr = sock.accept()
            except TimeoutError:
                break
            except OSError as exc:
                if exc.errno in _RETRY_ACCEPT_ERRNOS:
                    continue
                break
            pool.spawn_n(self._serve, address, client, addr)

    def _drain_gated(
        self, listener: Any, address: ListenerAddress, sock: GreenSocket, pool: GreenPool
    ) -> None:
        """Accept from a gated listener whenever a slot is free, until its queue stays empty."""
        import eventlet

        watch = self.backlog_watch([listener])
        sock.settimeout(_DRAIN_WAIT)
        while (ready := watch.poll()) is not None:
            if not ready:
                eventlet.sleep(_DRAIN_WAIT)
                continue
            with pool.sem:
                pass
            try:
                client, addr = sock.accept()
            except TimeoutError:
                continue  # a sibling took it
            except OSError as exc:
                if exc.errno in _RETRY_ACCEPT_ERRNOS:
                    continue
                break
            pool.spawn_n(self._serve, address, client, addr)

    # -- connections -------------------------------------------------------------

    def _serve(self, address: ListenerAddress, client: Any, addr: Any) -> None:
        """Serve one accepted connection, wrapping it in TLS first if configured."""
        if self._ssl_context is None:
            # gunicorn's file_wrapper responses call sock.sendfile() on plain sockets.
            client.sendfile = partial(green_sendfile, client)
        else:
            from eventlet.green.ssl import GreenSSLContext

            try:
                # Called unbound so that a context built with the unpatched ssl
                # module (say by an ssl_context hook) still yields a green socket.
                client = GreenSSLContext.wrap_socket(
                    self._ssl_context,
                    client,
                    server_side=True,
                    do_handshake_on_connect=self.cfg.do_handshake_on_connect,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            except OSError as exc:  # includes ssl.SSLError
                self.log.debug("TLS handshake with %s failed: %s", addr, exc)
                util.close(client)
                return
        self.handle(address, client, addr)

    def is_already_handled(self, respiter: object) -> bool:
        """Also stop serving a connection that an eventlet app took over, e.g. a websocket."""
        local = self._wsgi_local
        if local is not None and getattr(local, "already_handled", False):
            local.already_handled = False
            raise StopIteration
        return bool(super().is_already_handled(respiter))

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Close quietly when shutdown kills a connection; otherwise answer as gunicorn does."""
        from eventlet.support.greenlets import GreenletExit

        if isinstance(exc, GreenletExit):
            self.log.debug("Connection from %s closed at shutdown", addr)
            return
        super().handle_error(req, client, addr, exc)
