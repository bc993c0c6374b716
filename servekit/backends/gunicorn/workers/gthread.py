"""gunicorn's threaded worker, plus serving what is queued on the listener at shutdown.

Use it as ``worker_class = "servekit.backends.gunicorn.workers.gthread.ThreadWorker"``.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker

from servekit.backends.gunicorn.workers.clients import ClientLimit
from servekit.backends.gunicorn.workers.drain import RETRY_ACCEPT_ERRNOS, StopClock
from servekit.backends.gunicorn.workers.limits import Refuses413, begin_body, current

__all__ = ["ThreadWorker"]

_IDLE_POLL_SECONDS = 0.01


class ThreadWorker(StopClock, Refuses413, _GunicornThreadWorker):  # type: ignore[misc]
    """``threads`` requests at once, as gunicorn's; on a graceful stop of the whole
    server it keeps accepting while it has a free thread, until the listen queue
    stays empty.

    gunicorn's threaded worker stops accepting on SIGTERM and finishes what it
    holds; the connections still queued on the listener are reset when the last
    worker closes it, after their clients sent a request (DESIGN §4 measured 7 with
    two workers of four threads).

    A client that stays silent while its request is read is disconnected after
    ``timeout`` seconds (:mod:`servekit.backends.gunicorn.workers.clients`); gunicorn's thread would
    wait for it for good.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drained = False

    def accept(self, listener: Any) -> None:
        """Accept one connection for the thread pool; a client silent for ``timeout``
        seconds while its request is read is let go instead of holding a thread."""
        try:
            client, addr = self._clients.accept(listener)
        except OSError as exc:
            if exc.errno in RETRY_ACCEPT_ERRNOS:
                return
            raise
        self.nr_conns += 1
        self.enqueue_req(TConn(self.cfg, client, addr, listener.getsockname()))

    def run(self) -> None:
        """Serve with the silent-client limit on the listeners (see ``accept``)."""
        self._clients = ClientLimit(
            self.sockets,
            float(self.cfg.timeout),
            tls=self.cfg.is_ssl,
            limits=current(),
            log=self.log,
        )
        super().run()

    def handle_request(self, req: Any, conn: Any) -> Any:
        """gunicorn's, once a declared body over ``max_body_size`` is refused (413)."""
        begin_body(req, conn.sock)
        return super().handle_request(req, conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Stop accepting; when the whole server stops, first drain the listen queue.

        gunicorn's ``run()`` calls this with False once, when its main loop ends and
        before it waits for the connections it holds: the place to take the queued ones.
        """
        if not enabled and not self.alive and not self._drained and self.stop_announced():
            self._drained = True
            super().set_accept_enabled(False)
            self.drain_backlog()
        super().set_accept_enabled(enabled)

    def drain_backlog(self) -> None:
        """Accept queued connections whenever a thread is free, until the queue stays empty."""
        watch = self.backlog_watch()
        while (ready := watch.poll()) is not None:
            self.notify()
            if ready and self.nr_conns < self.worker_connections:
                for listener in ready:
                    # gunicorn's accept() ignores EAGAIN: a sibling was quicker.
                    self.accept(listener)
                continue
            # Finished requests come back through the method queue and free a thread.
            self.wait_for_and_dispatch_events(timeout=_IDLE_POLL_SECONDS)
            self.murder_keepalived()
            self.murder_pending()
