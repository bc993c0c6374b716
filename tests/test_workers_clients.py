"""The silent-client limit of servekit's sync and gthread workers, on real sockets."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn.http.errors import NoMoreData

from servekit.workers.clients import ClientLimit, TimedClientSocket

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
