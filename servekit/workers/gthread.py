"""Deprecated alias of :class:`servekit.backends.gunicorn.workers.gthread.ThreadWorker` (removed in the next release)."""

from servekit.backends.gunicorn.workers.gthread import ThreadWorker

__all__ = ["ThreadWorker"]
