"""Deprecated aliases: the worker classes moved to :mod:`servekit.backends.gunicorn.workers`.

The old dotted paths (``servekit.workers.sync.SyncWorker`` ...) keep working for one
release, for gunicorn configs that name them; they will be removed in the next one.
"""
