"""Deprecated alias of :class:`servekit.backends.gunicorn.workers.tornado.TornadoWorker` (removed in the next release)."""

from servekit.backends.gunicorn.workers.tornado import TornadoWorker

__all__ = ["TornadoWorker"]
