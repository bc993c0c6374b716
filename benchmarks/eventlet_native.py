"""eventlet's own server in one process: ``python -m benchmarks.eventlet_native PORT``.

The reference for servekit's eventlet worker: the same app, monkey-patched before it
is imported, served by ``eventlet.wsgi.server`` with its request log off.
"""

from __future__ import annotations

import sys
import warnings


def main(argv: list[str]) -> None:
    """Patch, import the app, and serve it on 127.0.0.1:PORT until killed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet
        import eventlet.wsgi

    eventlet.monkey_patch()
    from benchmarks.app import app

    port = int(argv[0])
    listener = eventlet.listen(("127.0.0.1", port), backlog=2048)
    eventlet.wsgi.server(listener, app, log_output=False, keepalive=True)


if __name__ == "__main__":
    main(sys.argv[1:])
