"""Deprecated alias of :class:`servekit.backends.gunicorn.workers.eventlet.EventletWorker` (removed in the next release)."""

from servekit.backends.gunicorn.workers.eventlet import EventletWorker

__all__ = ["EventletWorker"]
