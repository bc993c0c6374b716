"""gunicorn's sync worker, plus serving what is queued on the listener at shutdown.

Use it as ``worker_class = "servekit.workers.sync.SyncWorker"``.
"""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Any

from gunicorn import util
from gunicorn.workers.sync import SyncWorker as _GunicornSyncWorker

from servekit.sockets import BacklogWatch
from servekit.workers.clients import adopt
from servekit.workers.drain import drain_deadline, stop_announced

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["SyncWorker"]

_IDLE_POLL_SECONDS = 0.01
_RETRY_ACCEPT_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED})


class SyncWorker(_GunicornSyncWorker):  # type: ignore[misc]
    """One request at a time, as gunicorn's; on a graceful stop of the whole server it
    keeps accepting, one connection at a time, until the listen queue stays empty.

    gunicorn's sync worker leaves on SIGTERM at once, and the connections still
    queued on the listener are reset when the last worker closes it, after their
    clients sent a request (DESIGN §4 measured 8 with two workers).

    A client that stays silent while its request is read is disconnected after half
    of ``timeout`` (:mod:`servekit.workers.clients`) instead of holding the worker
    until the master kills it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_signalled_at: float | None = None

    def accept(self, listener: Any) -> None:
        """Accept one connection and serve it; a client silent for ``timeout / 2``
        seconds is let go (before the master would kill this worker for it)."""
        client, addr = listener.accept()
        client = adopt(client, float(self.timeout))
        util.close_on_exec(client)
        self.handle(listener, client, addr)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM (and SIGINT under servekit): finish the request, then drain."""
        if self._stop_signalled_at is None:
            self._stop_signalled_at = time.monotonic()
        super().handle_exit(sig, frame)

    def run(self) -> None:
        """Serve until told to stop; then serve the queued connections if the server stops."""
        super().run()
        if stop_announced(self._stop_signalled_at):
            self.drain_backlog()

    def drain_backlog(self) -> None:
        """Accept and serve queued connections until the queue stays empty (or time is up)."""
        watch = BacklogWatch(self.sockets, drain_deadline(self.cfg, self._stop_signalled_at))
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
                    if exc.errno not in _RETRY_ACCEPT_ERRNOS:
                        raise
