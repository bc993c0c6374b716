"""The app every benchmark serves.

* ``/``: a trivial response (launcher overhead, start-up).
* ``/io?ms=50``: waits ``ms`` milliseconds with ``time.sleep`` (looked up at call time,
  so it is cooperative under gevent and eventlet, which patch it in each worker).
* ``/cpu?loops=N``: ``N`` rounds of pure-Python arithmetic (a few milliseconds).
* ``/hello`` (as ``/``), ``/json`` (about 10 KB of JSON, encoded per request) and
  ``/sleep?ms=50`` (as ``/io``): the endpoints of the granian comparison.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]

HELLO = b"hello\n"
CPU_LOOPS = 80_000
#: what ``/json`` encodes on every request: about 10 KB
RECORDS = [
    {"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b", "c"], "active": i % 2 == 0}
    for i in range(120)
]


def burn(loops: int) -> int:
    """Pure-Python work that holds the GIL for its whole duration."""
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


def _query_int(environ: dict[str, Any], name: str, default: int) -> int:
    for part in environ.get("QUERY_STRING", "").split("&"):
        key, _, value = part.partition("=")
        if key == name and value.isdigit():
            return int(value)
    return default


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer ``/``, ``/io`` and ``/cpu``; anything else is 404."""
    path = environ.get("PATH_INFO", "/")
    kind = "text/plain"
    if path in ("/", "/hello"):
        body = HELLO
    elif path == "/json":
        body, kind = json.dumps(RECORDS).encode(), "application/json"
    elif path in ("/io", "/sleep"):
        ms = min(_query_int(environ, "ms", 50), 10_000)
        if ms:
            time.sleep(ms / 1000)
        body = b"io\n"
    elif path == "/cpu":
        body = f"{burn(min(_query_int(environ, 'loops', CPU_LOOPS), 10_000_000))}\n".encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"404\n"]
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]
