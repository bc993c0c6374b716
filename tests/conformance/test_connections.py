"""Connections on every strategy: keep-alive as the response declares it, pipelining,
``Connection: close`` and HTTP/1.0 closing, an unread body skipped before the next request.

gunicorn's sync worker (the reference) closes every connection after its response and
says so; a strategy that keeps connections alive must then serve the next request on it,
in order. Either way, what a server does must be what its response header says.
"""

from __future__ import annotations

import pytest

from tests.conformance.conftest import WITH_REFERENCE, Servers
from tests.conformance.wire import Connection, Response, request

pytestmark = [pytest.mark.conformance, pytest.mark.server]


def _query_of(response: Response | None) -> str | None:
    """The QUERY_STRING an ``/env`` response reports."""
    assert response is not None, "connection ended without a response"
    assert response.status == 200, f"{response.status} {response.body[:200]!r}"
    query: str = response.json()["query"]
    return query


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
@pytest.mark.parametrize(
    "version,headers",
    [("HTTP/1.1", []), ("HTTP/1.0", [("Connection", "keep-alive")])],
    ids=["http11", "http10-keep-alive"],
)
def test_keepalive_as_declared(
    servers: Servers, strategy: str, version: str, headers: list[tuple[str, str]]
) -> None:
    """After a response that does not say the connection closes, it serves a second
    request; after one that says so, the server closes."""
    with Connection(servers.port(strategy)) as conn:
        conn.send(request("GET", "/env?n=1", headers, version=version))
        _, first = conn.read_final()
        assert _query_of(first) == "n=1"
        assert first is not None
        if first.closes:
            ending = conn.ending()
            assert ending == "closed", f"{strategy}: after a response that said close: {ending}"
            return
        second_request = request("GET", "/env?n=2", headers, version=version)
        assert conn.send(second_request), f"{strategy}: kept-alive connection reset"
        _, second = conn.read_final()
        assert second is not None, f"{strategy}: kept-alive connection closed without a response"
        assert _query_of(second) == "n=2"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
@pytest.mark.parametrize(
    "version,headers",
    [("HTTP/1.1", [("Connection", "close")]), ("HTTP/1.0", [])],
    ids=["connection-close", "http10"],
)
def test_close_requested(
    servers: Servers, strategy: str, version: str, headers: list[tuple[str, str]]
) -> None:
    """``Connection: close`` (or HTTP/1.0 without keep-alive) gets a response that says it
    closes, and the server closes."""
    with Connection(servers.port(strategy)) as conn:
        conn.send(request("GET", "/env?n=1", headers, version=version))
        _, response = conn.read_final()
        assert _query_of(response) == "n=1"
        assert response is not None
        if version == "HTTP/1.1":
            assert response.closes, f"{strategy}: no 'Connection: close' in {response.headers}"
        ending = conn.ending()
        assert ending == "closed", f"{strategy}: after the response: {ending}"


def _pipelined(port: int, raw: bytes, methods: list[str]) -> list[Response]:
    """Send ``raw`` (several requests) at once; read responses until the connection ends,
    one declares close, or all have come."""
    responses: list[Response] = []
    with Connection(port) as conn:
        conn.send(raw)
        for method in methods:
            _, response = conn.read_final(method)
            if response is None:
                break
            responses.append(response)
            if response.closes:
                ending = conn.ending()
                assert ending == "closed", f"after a response that said close: {ending}"
                break
        else:
            assert not conn.buffer, f"bytes after the last response: {bytes(conn.buffer)[:100]!r}"
    return responses


def _check_pipeline(responses: list[Response], count: int, strategy: str) -> None:
    assert responses, f"{strategy}: no response to the first pipelined request"
    if len(responses) < count:
        assert responses[-1].closes, (
            f"{strategy}: {len(responses)} of {count} responses, the last not saying close"
        )


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_pipelined_gets(servers: Servers, strategy: str) -> None:
    """Three GETs sent in one write get their responses in order (as many as the server
    keeps the connection for)."""
    raw = b"".join(request("GET", f"/env?n={i}") for i in (1, 2, 3))
    responses = _pipelined(servers.port(strategy), raw, ["GET"] * 3)
    _check_pipeline(responses, 3, strategy)
    assert [_query_of(r) for r in responses] == [f"n={i}" for i in (1, 2, 3)][: len(responses)]


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_pipelined_post_then_get(servers: Servers, strategy: str) -> None:
    """A POST's body ends where its Content-Length says: the GET after it is a request of its own."""
    body = b"GET /env?n=smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = request("POST", "/echo", body=body) + request("GET", "/env?n=2")
    responses = _pipelined(servers.port(strategy), raw, ["POST", "GET"])
    _check_pipeline(responses, 2, strategy)
    assert responses[0].status == 200
    assert responses[0].json()["length"] == len(body)
    if len(responses) > 1:
        assert _query_of(responses[1]) == "n=2"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_pipelined_head_then_get(servers: Servers, strategy: str) -> None:
    """A HEAD response sends no body, so the GET response after it parses (keep-alive)."""
    raw = request("HEAD", "/head") + request("GET", "/env?n=2")
    responses = _pipelined(servers.port(strategy), raw, ["HEAD", "GET"])
    _check_pipeline(responses, 2, strategy)
    assert responses[0].status == 200
    if len(responses) > 1:
        assert _query_of(responses[1]) == "n=2"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_unread_body_is_skipped(servers: Servers, strategy: str) -> None:
    """A 100 KiB body the app never reads does not become the next request on a kept-alive
    connection."""
    body = b"GET /env?n=smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 2500
    raw = request("POST", "/ping", body=body) + request("GET", "/env?n=2")
    responses = _pipelined(servers.port(strategy), raw, ["POST", "GET"])
    _check_pipeline(responses, 2, strategy)
    assert (responses[0].status, responses[0].body) == (200, b"pong")
    if len(responses) > 1:
        assert _query_of(responses[1]) == "n=2"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_nothing_served_after_connection_close(servers: Servers, strategy: str) -> None:
    """A request pipelined after one that said ``Connection: close`` is not served."""
    raw = request("GET", "/env?n=1", [("Connection", "close")]) + request("GET", "/env?n=2")
    with Connection(servers.port(strategy)) as conn:
        conn.send(raw)
        _, response = conn.read_final()
        assert _query_of(response) == "n=1"
        ending = conn.ending()
    assert ending == "closed", f"{strategy}: after the response to 'Connection: close': {ending}"
