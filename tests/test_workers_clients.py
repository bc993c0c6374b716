"""The silent-client limit of servekit's sync and gthread workers, on real sockets."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gunicorn.http.errors import NoMoreData

from servekit.backends.gunicorn.workers.clients import ClientLimit, TimedClientSocket
from tests.conftest import children_of

NO_TIMEOUT = bytes(struct.calcsize("@ll"))


def _timeouts(sock: socket.socket) -> tuple[bytes, bytes]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, len(NO_TIMEOUT)),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, len(NO_TIMEOUT)),
    )


@pytest.fixture(params=["tcp", "unix"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[socket.socket]:
    """A non-blocking listener, as gunicorn's workers keep theirs."""
    if request.param == "tcp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(tmp_path / "s.sock"))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connect(listener: socket.socket) -> socket.socket:
    client = socket.socket(listener.family, socket.SOCK_STREAM)
    client.connect(listener.getsockname())
    return client


def test_a_silent_client_ends_as_no_more_data(listener: socket.socket) -> None:
    limit = ClientLimit([listener], 0.2)
    client = _connect(listener)
    conn, _ = limit.accept(listener)
    assert isinstance(conn, TimedClientSocket)
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert conn.recv(100) == b"GET / HTTP/1.1\r\n"
    started = time.monotonic()
    with pytest.raises(NoMoreData):
        conn.recv(100)
    assert 0.15 < time.monotonic() - started < 5
    with pytest.raises(NoMoreData):
        conn.recv_into(bytearray(10))
    client.close()
    conn.close()


def test_every_connection_gets_the_limit_in_plain_blocking_mode(listener: socket.socket) -> None:
    """The limit is the kernel's, on every connection (inherited from a TCP listener,
    set one by one behind a unix socket); Python's own timeout mode would put a poll()
    before every recv and send (the cost BENCHMARKS.md measured)."""
    limit = ClientLimit([listener], 1.5)
    expected = struct.pack("@ll", 1, 500_000)
    clients = [_connect(listener) for _ in range(3)]
    for _ in clients:
        conn, _ = limit.accept(listener)
        assert conn.gettimeout() is None
        assert conn.getblocking()
        assert _timeouts(conn) == (expected, expected)
        conn.close()
    for client in clients:
        client.close()


def test_a_non_blocking_read_still_says_would_block(listener: socket.socket) -> None:
    """gunicorn's gthread worker flips connections to non-blocking while they wait in
    its poller: a read there that finds nothing is not a client gone."""
    limit = ClientLimit([listener], 0.2)
    client = _connect(listener)
    conn, _ = limit.accept(listener)
    conn.setblocking(False)
    with pytest.raises(BlockingIOError):
        conn.recv(100)
    conn.setblocking(True)
    with pytest.raises(NoMoreData):
        conn.recv(100)
    client.close()
    conn.close()


def test_nothing_queued_raises_like_accept(listener: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        ClientLimit([listener], 1).accept(listener)


def test_no_limit_means_plain_sockets(listener: socket.socket) -> None:
    limit = ClientLimit([listener], 0)
    assert _timeouts(listener) == (NO_TIMEOUT, NO_TIMEOUT)
    client = _connect(listener)
    conn, _ = limit.accept(listener)
    assert type(conn) is socket.socket
    assert conn.gettimeout() is None
    assert _timeouts(conn) == (NO_TIMEOUT, NO_TIMEOUT)
    client.close()
    conn.close()


def test_an_app_default_timeout_does_not_reach_connections(listener: socket.socket) -> None:
    """``socket.setdefaulttimeout()`` in the app (loaded before the worker accepts) would
    put connections in Python's timeout mode; they stay blocking, with the worker's limit."""
    limit = ClientLimit([listener], 0.3)
    socket.setdefaulttimeout(0.05)
    try:
        client = _connect(listener)
        conn, _ = limit.accept(listener)
    finally:
        socket.setdefaulttimeout(None)
    assert conn.gettimeout() is None
    started = time.monotonic()
    with pytest.raises(NoMoreData):
        conn.recv(100)
    assert time.monotonic() - started > 0.2
    client.close()
    conn.close()


def test_sendfile_to_a_client_that_never_reads_gives_up(
    listener: socket.socket, tmp_path: Path
) -> None:
    """CPython's ``sendfile()`` waits in select() once the kernel's send times out; the
    limit must hold there too (gunicorn sends file responses with it)."""
    big = tmp_path / "big"
    big.write_bytes(bytes(64 * 1024 * 1024))
    limit = ClientLimit([listener], 0.3)
    client = _connect(listener)  # connected, never reads
    conn, _ = limit.accept(listener)
    started = time.monotonic()
    with big.open("rb") as file, pytest.raises(OSError):
        conn.sendfile(file)
    assert time.monotonic() - started < 20
    assert conn.gettimeout() is None  # back to plain blocking mode
    client.close()
    conn.close()


def test_no_limit_clears_one_left_on_the_listener(listener: socket.socket) -> None:
    """The listener outlives a reload: a new worker without a limit clears the old one."""
    ClientLimit([listener], 2)
    limit = ClientLimit([listener], 0)
    assert _timeouts(listener) == (NO_TIMEOUT, NO_TIMEOUT)
    client = _connect(listener)
    conn, _ = limit.accept(listener)
    assert _timeouts(conn) == (NO_TIMEOUT, NO_TIMEOUT)
    client.close()
    conn.close()


def test_tls_connections_use_python_timeout_mode(listener: socket.socket) -> None:
    """OpenSSL retries a read the kernel timed out on a blocking socket, so TLS
    connections get Python's timeout, kept when gthread sets blocking mode before wrapping."""
    limit = ClientLimit([listener], 0.4, tls=True)
    assert _timeouts(listener) == (NO_TIMEOUT, NO_TIMEOUT)
    client = _connect(listener)
    conn, _ = limit.accept(listener)
    assert conn.gettimeout() == 0.4
    conn.setblocking(False)
    conn.setblocking(True)
    assert conn.gettimeout() == 0.4
    client.close()
    conn.close()


@pytest.mark.server
@pytest.mark.parametrize("strategy", ["sync", "gthread"])
def test_a_stalled_tls_client_is_let_go(
    serve_app: Any, strategy: str, tls_pair: tuple[Path, Path]
) -> None:
    """Over TLS, a client that stalls mid-request holds the only worker/thread only until
    the limit (sync: timeout/2, gthread: timeout); the next client is then served, by the
    same worker (not one the master killed for silence)."""
    cert, key = tls_pair
    sizes = {"workers": 1} if strategy == "sync" else {"workers": 1, "threads": 1}
    server = serve_app(strategy=strategy, certfile=str(cert), keyfile=str(key), timeout=6, **sizes)
    port = int(server.url.rsplit(":", 1)[1])
    (worker,) = children_of(server.pid)
    context = ssl.create_default_context(cafile=str(cert))
    stalled = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1"
    )
    stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1"
    ) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = b""
        with contextlib.suppress(ssl.SSLEOFError):
            while chunk := tls.recv(65536):
                reply += chunk
    waited = time.monotonic() - started
    stalled.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
    assert waited < 20
    assert children_of(server.pid) == [worker]
