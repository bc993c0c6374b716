"""The silent-client limit of servekit's sync and gthread workers, on real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from gunicorn.http.errors import NoMoreData

from servekit.workers.clients import TimedClientSocket, adopt


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_silent_client_ends_as_no_more_data(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    timed = adopt(server, 0.2)
    assert isinstance(timed, TimedClientSocket)
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert timed.recv(100) == b"GET / HTTP/1.1\r\n"
    started = time.monotonic()
    with pytest.raises(NoMoreData):
        timed.recv(100)
    waited = time.monotonic() - started
    assert 0.15 < waited < 5
    buffer = bytearray(10)
    with pytest.raises(NoMoreData):
        timed.recv_into(buffer)
    timed.close()


def test_the_socket_stays_in_plain_blocking_mode(pair: tuple[socket.socket, socket.socket]) -> None:
    """The limit is the kernel's: Python's own timeout mode would put a poll() before
    every recv and send (the cost BENCHMARKS.md measured)."""
    server, _ = pair
    timed = adopt(server, 1.5)
    assert timed.gettimeout() is None
    assert timed.getblocking()
    raw = timed.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    assert raw != bytes(len(raw))  # a receive timeout is set
    assert timed.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16) == raw
    timed.close()


def test_a_non_blocking_read_still_says_would_block(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """gunicorn's gthread worker flips connections to non-blocking while they wait in
    its poller: a read there that finds nothing is not a client gone."""
    server, _ = pair
    timed = adopt(server, 0.2)
    timed.setblocking(False)
    with pytest.raises(BlockingIOError):
        timed.recv(100)
    timed.setblocking(True)
    with pytest.raises(NoMoreData):
        timed.recv(100)
    timed.close()


def test_no_limit_leaves_the_socket_as_it_is(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _ = pair
    server.setblocking(False)
    same = adopt(server, 0)
    assert same is server
    assert same.gettimeout() is None
    assert same.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == bytes(16)
