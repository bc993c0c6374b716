"""Test app for ``servekit tune``: each request computes for 15 ms of CPU time and never waits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

#: CPU seconds each request spends
CPU_SECONDS = 0.015


def burn(seconds: float) -> int:
    """Compute (in pure Python, holding the GIL) until this thread has used ``seconds`` of CPU."""
    total, start = 0, time.thread_time()
    while time.thread_time() - start < seconds:
        for i in range(2000):
            total += i * i % 7
    return total


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every path after the computation."""
    body = f"{burn(CPU_SECONDS)}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
