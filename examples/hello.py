"""A bare WSGI app: ``/`` says hello, ``/sleep?s=0.3`` waits, ``/pid`` names the process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer three paths; everything else is 404."""
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        seconds = min(float(query.get("s", ["0.3"])[0]), 30.0)
        time.sleep(seconds)
        body = f"slept {seconds}\n".encode()
    elif path == "/pid":
        body = f"{os.getpid()}\n".encode()
    elif path == "/":
        body = b"hello from servekit\n"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


if __name__ == "__main__":
    from servekit import serve

    serve(app)
