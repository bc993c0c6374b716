"""Deprecated alias of :class:`servekit.backends.gunicorn.workers.gevent.GeventWorker` (removed in the next release)."""

from servekit.backends.gunicorn.workers.gevent import GeventWorker

__all__ = ["GeventWorker"]
