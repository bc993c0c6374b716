"""Test app for ``servekit tune``: each request waits 30 ms in ``time.sleep`` (I/O, no CPU)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

#: seconds each request waits
WAIT_SECONDS = 0.03


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every path after the wait (cooperative under gevent and eventlet)."""
    time.sleep(WAIT_SECONDS)
    body = b"waited\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
