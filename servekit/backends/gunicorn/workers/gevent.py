"""gunicorn's gevent worker, plus serving what is queued on the listener at shutdown.

Use it as ``worker_class = "servekit.backends.gunicorn.workers.gevent.GeventWorker"``. Like gunicorn's
own gevent worker class, importing this module imports gevent (gunicorn loads the
worker class in the master); the standard library is patched in each worker.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

from servekit.backends.gunicorn.workers.drain import StopClock
from servekit.backends.gunicorn.workers.paced import PacedAsync

__all__ = ["GeventWorker"]

# How often the main greenlet looks at `alive` (gunicorn's worker: once a second).
_TICK_SECONDS = 0.1
_DRAIN_POLL_SECONDS = 0.01


class GeventWorker(StopClock, PacedAsync, _GunicornGeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker with a drain: on a graceful stop of the whole server,
    its servers keep accepting (while their pool has room) until the listen queue
    stays empty; then they close and the requests in flight get the rest of
    ``graceful_timeout``.

    gunicorn's gevent worker closes its listener on SIGTERM: connections still queued
    there are reset when the last worker closes it, after their clients sent a request.
    """

    def _start_servers(self) -> list[StreamServer]:
        """One StreamServer per listener, each with a pool of ``worker_connections``."""
        ssl_args: dict[str, Any] = {}
        if self.cfg.is_ssl:
            ssl_args = {"ssl_context": ssl_context(self.cfg)}
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            pool = Pool(self.worker_connections)
            server = StreamServer(
                listener, handle=partial(self.handle, listener), spawn=pool, **ssl_args
            )
            if self.cfg.workers > 1:
                # One connection per wake-up, so idle siblings get their share.
                server.max_accept = 1
            server.start()
            servers.append(server)
        return servers

    def run(self) -> None:
        """Serve until told to stop; drain the listen queue if the server stops; finish."""
        servers = self._start_servers()
        while self.alive:
            self.notify()
            gevent.sleep(_TICK_SECONDS)
        watch = self.backlog_watch()
        if self.stop_announced(gevent.sleep):
            # The servers are still accepting; wait until nothing is left queued.
            while watch.poll() is not None:
                self.notify()
                gevent.sleep(_DRAIN_POLL_SECONDS)
        for server in servers:
            server.close()
        while any(server.pool.free_count() != server.pool.size for server in servers):
            if time.monotonic() >= watch.deadline:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                for server in servers:
                    server.stop(timeout=1)
                return
            self.notify()
            gevent.sleep(_DRAIN_POLL_SECONDS * 5)
