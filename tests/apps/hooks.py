"""gunicorn request hooks that tests pass through the ``gunicorn`` option."""

from __future__ import annotations

from typing import Any


def mark_request(worker: Any, req: Any) -> None:
    """pre_request: add a header the app echoes at ``/hooked``."""
    req.headers.append(("X-SERVEKIT-HOOK", "pre_request ran"))


def note_end(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """post_request: log an event the test looks for."""
    worker.log.info("post_request hook ran for %s", environ.get("PATH_INFO"))
