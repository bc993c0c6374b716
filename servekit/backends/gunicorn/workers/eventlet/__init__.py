"""servekit's eventlet worker for gunicorn (gunicorn 26 removed its own).

``worker_class = "servekit.backends.gunicorn.workers.eventlet.EventletWorker"``.
Importing it has no side effects: eventlet is imported, and the process
monkey-patched, only inside the forked worker.
"""

from servekit.backends.gunicorn.workers.eventlet.worker import EventletWorker

__all__ = ["EventletWorker"]
