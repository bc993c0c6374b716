"""Test app for ``servekit tune``: each request computes for 8 ms of CPU, then waits 8 ms."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from tests.apps.tune_cpu import burn

CPU_SECONDS = 0.008
WAIT_SECONDS = 0.008


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every path after half computation, half waiting."""
    body = f"{burn(CPU_SECONDS)}\n".encode()
    time.sleep(WAIT_SECONDS)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
