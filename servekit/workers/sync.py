"""Deprecated alias of :class:`servekit.backends.gunicorn.workers.sync.SyncWorker` (removed in the next release)."""

from servekit.backends.gunicorn.workers.sync import SyncWorker

__all__ = ["SyncWorker"]
