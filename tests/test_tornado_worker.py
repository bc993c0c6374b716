"""The tornado worker's response path, beyond what the conformance suite compares:
back-pressure (a large download is produced as fast as the client takes it, never
ahead of it, over TLS too), a client that half-closes after its request still gets
its answer, and a client that stops reading is let go, its thread freed and the
iterable closed."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.conftest import get

pytestmark = pytest.mark.server

APP = "tests.test_tornado_worker:app"
CHUNK = 1024 * 1024
OPTIONS: dict[str, Any] = {"workers": 1, "threads": 2, "access_log": False}

#: what this worker's ``/big`` bodies did: chunks produced, iterables closed
_counts = {"produced": 0, "closed": 0}


class _BigBody:
    """``count`` chunks of 1 MiB, each counted as it is produced; ``close()`` counted too."""

    def __init__(self, count: int, delay: float) -> None:
        self.count = count
        self.delay = delay

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.count):
            if index and self.delay:
                time.sleep(self.delay)
            _counts["produced"] += 1
            yield b"x" * CHUNK

    def close(self) -> None:
        _counts["closed"] += 1


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/big?n=&delay=``: n MiB with Content-Length; ``/counts``: the counts as JSON;
    ``/stream``: three lines 0.2 s apart; anything else: ``ok``."""
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ.get("PATH_INFO")
    if path == "/big":
        count = int(query.get("n", "64"))
        headers = [("Content-Type", "application/octet-stream")]
        start_response("200 OK", [*headers, ("Content-Length", str(count * CHUNK))])
        return _BigBody(count, float(query.get("delay", "0")))
    if path == "/counts":
        body = json.dumps(_counts).encode()
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (time.sleep(0.2 * i) or f"line {i}\n".encode() for i in range(3))
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _counts_of(url: str) -> dict[str, int]:
    status, body = get(url, "/counts", timeout=10)
    assert status == 200
    counts: dict[str, int] = json.loads(body)
    return counts


def _connect(url: str, receive_buffer: int | None = None) -> socket.socket:
    host, port = url.rsplit("//", 1)[1].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(15)
    sock.connect((host, int(port)))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ssl.SSLEOFError):  # TLS: a close without close_notify
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_large_download_waits_for_the_client(serve_app: Any) -> None:
    """While the client reads nothing, the app is asked for only a few more chunks (what
    the socket buffers hold), not the whole 64 MiB; then all of it arrives intact."""
    server = serve_app(APP, strategy="tornado", **OPTIONS)
    with _connect(server.url, receive_buffer=64 * 1024) as sock:
        sock.sendall(b"GET /big?n=64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        time.sleep(1.0)
        produced = _counts_of(server.url)["produced"]
        assert produced <= 10, f"{produced} of 64 chunks produced for a client reading nothing"
        rest = _read_all(sock)
    body = (head + rest).split(b"\r\n\r\n", 1)[1]
    assert len(body) == 64 * CHUNK and body.count(b"x") == len(body)
    assert _counts_of(server.url) == {"produced": 64, "closed": 1}


def test_a_large_download_over_tls_arrives_whole(
    serve_app: Any, tls_pair: tuple[Path, Path]
) -> None:
    """A 32 MiB body streamed over TLS to a client that starts reading late arrives whole
    (the wait for each piece to be flushed ends on TLS connections as on plain ones)."""
    cert, key = tls_pair
    server = serve_app(APP, strategy="tornado", certfile=str(cert), keyfile=str(key), **OPTIONS)
    context = ssl.create_default_context(cafile=str(cert))
    with context.wrap_socket(_connect(server.url), server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /big?n=32 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.5)
        reply = _read_all(tls)
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    assert len(body) == 32 * CHUNK and body.count(b"x") == len(body)


@pytest.mark.parametrize("path", ["/", "/stream"])
def test_half_closed_client_gets_its_answer(serve_app: Any, path: str) -> None:
    """A client that shuts down its sending side right after its request (as some
    scripts and proxies do) still gets the whole response, then the connection ends."""
    server = serve_app(APP, strategy="tornado", **OPTIONS)
    with _connect(server.url) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    if path == "/":
        assert reply.endswith(b"\r\n\r\nok")
    else:
        assert b"line 0\n" in reply and reply.endswith(b"line 2\n\r\n0\r\n\r\n"), reply[-80:]


def test_a_client_that_stops_reading_is_let_go(serve_app: Any) -> None:
    """A client that stops reading mid-response holds its thread only for the silence
    limit (``timeout``): then the connection is dropped and the iterable closed."""
    server = serve_app(APP, strategy="tornado", timeout=2, **OPTIONS)
    with _connect(server.url, receive_buffer=64 * 1024) as sock:
        sock.sendall(b"GET /big?n=256 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while _counts_of(server.url)["closed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        counts = _counts_of(server.url)
    assert counts["closed"] == 1, counts
    assert counts["produced"] < 256
    assert get(server.url, "/", timeout=10) == (200, b"ok")
