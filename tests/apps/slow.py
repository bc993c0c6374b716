"""Test app: ``/sleep?s=`` waits (cooperatively once patched), ``/pid``, ``/patched``, ``/big``,
``/huge`` (64 MiB streamed), ``/upload`` (reads the body, answers its length), ``/work``
(reads the body, then works 0.3 s) and ``/most-at-once`` (how many ``/work`` requests
worked at the same time at most in this process)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs


def _socket_patched() -> bool:
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            return True
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched("socket"):
            return True
    return False


#: whether the standard library was already patched when this module was imported
PATCHED_AT_IMPORT = _socket_patched()

_working_lock = threading.Lock()
_working = [0, 0]  # now, most at once


def _work(seconds: float) -> None:
    with _working_lock:
        _working[0] += 1
        _working[1] = max(_working)
    try:
        time.sleep(seconds)
    finally:
        with _working_lock:
            _working[0] -= 1


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer the test paths."""
    path = environ.get("PATH_INFO", "/")
    status = "200 OK"
    if path == "/sleep":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["0.3"])[0])
        time.sleep(seconds)
        body = f"slept {seconds} in {os.getpid()}\n".encode()
    elif path == "/pid":
        body = f"{os.getpid()}".encode()
    elif path == "/patched":
        body = json.dumps({"at_import": PATCHED_AT_IMPORT, "now": _socket_patched()}).encode()
    elif path == "/big":
        body = b"x" * 100_000
    elif path == "/huge":
        # 64 MiB, streamed: more than loopback's socket buffers hold (slow readers)
        chunk = b"x" * 65536
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(1 << 26))])
        return (chunk for _ in range(1024))
    elif path == "/work":
        environ["wsgi.input"].read()
        _work(0.3)
        body = b"worked"
    elif path == "/most-at-once":
        body = str(_working[1]).encode()
    elif path == "/upload":
        body = str(len(environ["wsgi.input"].read())).encode()
    elif path == "/boom":
        raise RuntimeError("boom (a test app's error)")
    elif path == "/boom-after-start":
        start_response(status, [("Content-Type", "text/plain")])
        raise RuntimeError("boom after start_response (a test app's error)")
    elif path == "/hooked":
        body = environ.get("HTTP_X_SERVEKIT_HOOK", "no hook").encode()
    elif path == "/":
        body = b"ok"
    else:
        status, body = "404 Not Found", b"not found"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def create_app() -> Callable[..., Iterable[bytes]]:
    """A factory, for the ``module:factory()`` form."""
    return app
