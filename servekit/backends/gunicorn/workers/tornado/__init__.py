"""servekit's tornado worker for gunicorn: a WSGI app on a thread pool, on tornado's loop.

- :mod:`.worker`: the gunicorn worker loop (heartbeat, signals, graceful drain);
- :mod:`.server`: accept control, connection tracking, drain;
- :mod:`.connection`: one HTTP/1.1 client connection, its heads parsed by gunicorn's parser;
- :mod:`.bridge`: what the app's thread holds of its connection (body source, socket);
- :mod:`.container`: the WSGI side, one request through the app on a pool thread.

Its dotted path for gunicorn's ``worker_class`` is
``servekit.backends.gunicorn.workers.tornado.TornadoWorker``.
"""

from servekit.backends.gunicorn.workers.tornado.worker import TornadoWorker

__all__ = ["TornadoWorker"]
