"""gunicorn's threaded worker, plus serving what is queued on the listener at shutdown.

Use it as ``worker_class = "servekit.workers.gthread.ThreadWorker"``.
"""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Any

from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker

from servekit.sockets import BacklogWatch
from servekit.workers.clients import adopt
from servekit.workers.drain import drain_deadline, stop_announced

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["ThreadWorker"]

_IDLE_POLL_SECONDS = 0.01
_RETRY_ACCEPT_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED})


class ThreadWorker(_GunicornThreadWorker):  # type: ignore[misc]
    """``threads`` requests at once, as gunicorn's; on a graceful stop of the whole
    server it keeps accepting while it has a free thread, until the listen queue
    stays empty.

    gunicorn's threaded worker stops accepting on SIGTERM and finishes what it
    holds; the connections still queued on the listener are reset when the last
    worker closes it, after their clients sent a request (DESIGN §4 measured 7 with
    two workers of four threads).

    A client that stays silent while its request is read is disconnected after
    ``timeout`` seconds (:mod:`servekit.workers.clients`); gunicorn's thread would
    wait for it for good.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_signalled_at: float | None = None
        self._drained = False

    def accept(self, listener: Any) -> None:
        """Accept one connection for the thread pool; a client silent for ``timeout``
        seconds while its request is read is let go instead of holding a thread."""
        try:
            client, addr = listener.accept()
        except OSError as exc:
            if exc.errno in _RETRY_ACCEPT_ERRNOS:
                return
            raise
        self.nr_conns += 1
        client = adopt(client, float(self.cfg.timeout))
        self.enqueue_req(TConn(self.cfg, client, addr, listener.getsockname()))

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM (and SIGINT under servekit): finish what is in flight, then drain."""
        if self._stop_signalled_at is None:
            self._stop_signalled_at = time.monotonic()
        super().handle_exit(sig, frame)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Stop accepting; when the whole server stops, first drain the listen queue.

        gunicorn's ``run()`` calls this with False once, when its main loop ends and
        before it waits for the connections it holds: the place to take the queued ones.
        """
        if (
            not enabled
            and not self.alive
            and not self._drained
            and stop_announced(self._stop_signalled_at)
        ):
            self._drained = True
            super().set_accept_enabled(False)
            self.drain_backlog()
        super().set_accept_enabled(enabled)

    def drain_backlog(self) -> None:
        """Accept queued connections whenever a thread is free, until the queue stays empty."""
        watch = BacklogWatch(self.sockets, drain_deadline(self.cfg, self._stop_signalled_at))
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
