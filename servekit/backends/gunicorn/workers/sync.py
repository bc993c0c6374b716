"""gunicorn's sync worker, plus serving what is queued on the listener at shutdown.

Use it as ``worker_class = "servekit.backends.gunicorn.workers.sync.SyncWorker"``.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn import util
from gunicorn.workers.sync import SyncWorker as _GunicornSyncWorker

from servekit.backends.gunicorn.workers.clients import ClientLimit
from servekit.backends.gunicorn.workers.drain import RETRY_ACCEPT_ERRNOS, StopClock
from servekit.backends.gunicorn.workers.limits import Refuses413, begin_body, current

__all__ = ["SyncWorker"]

_IDLE_POLL_SECONDS = 0.01


class SyncWorker(StopClock, Refuses413, _GunicornSyncWorker):  # type: ignore[misc]
    """One request at a time, as gunicorn's; on a graceful stop of the whole server it
    keeps accepting, one connection at a time, until the listen queue stays empty.

    gunicorn's sync worker leaves on SIGTERM at once, and the connections still
    queued on the listener are reset when the last worker closes it, after their
    clients sent a request (DESIGN §4 measured 8 with two workers).

    A client's request head must arrive within ``header_timeout``, its body at
    ``body_min_rate``, and each write of the response must be taken within half of
    ``timeout`` (:mod:`servekit.backends.gunicorn.workers.limits`): a slow client holds
    the worker for that long at most, not until the master kills it.
    """

    def run(self) -> None:
        """Serve until told to stop; then serve the queued connections if the server stops."""
        self._clients = ClientLimit(
            self.sockets, float(self.timeout), tls=self.cfg.is_ssl, limits=current(), log=self.log
        )
        super().run()
        if self.stop_announced():
            self.drain_backlog()

    def accept(self, listener: Any) -> None:
        """Accept one connection and serve it; a client silent for ``timeout / 2``
        seconds is let go (before the master would kill this worker for it)."""
        client, addr = self._clients.accept(listener)
        util.close_on_exec(client)
        self.handle(listener, client, addr)

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> None:
        """gunicorn's, once a declared body over ``max_body_size`` is refused (413)."""
        begin_body(req, client)
        super().handle_request(listener, req, client, addr)

    def drain_backlog(self) -> None:
        """Accept and serve queued connections until the queue stays empty (or time is up)."""
        watch = self.backlog_watch()
        while (ready := watch.poll()) is not None:
            self.notify()
            if not ready:
                time.sleep(_IDLE_POLL_SECONDS)
                continue
            for listener in ready:
                try:
                    self.accept(listener)
                except OSError as exc:
                    # A sibling took the connection first, or its client gave up.
                    if exc.errno not in RETRY_ACCEPT_ERRNOS:
                        raise
