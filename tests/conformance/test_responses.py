"""The response side on every strategy: what the server makes of the app's status and
headers (injection, invalid names and values, its own Server/Date headers), framing the
app got wrong (Content-Length too short or too long), bodies that must not be sent
(204, 304), empty chunks, HTTP/1.0 clients, and ``wsgi.input`` read the ways apps read it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conformance.app import RESPONSES
from tests.conformance.conftest import STRATEGIES, WITH_REFERENCE, Servers
from tests.conformance.wire import BadResponse, Connection, chunked, fetch, request

pytestmark = [pytest.mark.conformance, pytest.mark.server]

_REFERENCE: dict[tuple[str, ...], str] = {}


def _response_view(port: int, case: str) -> str:
    """What a client sees of ``/respond?case=CASE``: status, body, whether it is complete,
    the app's own headers (and any injected one), and what followed the response."""
    names = {name.lower() for name, _ in RESPONSES[case][1]} | {"x-injected", "x a"}
    app_values = {(name.lower(), value) for name, value in RESPONSES[case][1]}
    with Connection(port, timeout=5.0) as conn:
        conn.send(request("GET", f"/respond?case={case}", [("Connection", "close")]))
        try:
            _, response = conn.read_final()
        except TimeoutError:
            return "no response within 5s"
        except BadResponse as exc:
            return f"garbage: {exc}"
        if response is None:
            return "closed without response"
        ending = conn.ending()
    headers = []
    for name, value in response.headers:
        key = name.lower()
        if key in ("server", "date") and (key, value) not in app_values:
            value = "<the server's own>"
        if key in names:
            headers.append((key, value))
    after = "more bytes" if "more bytes" in ending else ending
    body = repr(response.body)
    if response.status >= 500 and not RESPONSES[case][0].startswith("5"):
        body = "<the server's error page>"  # its wording is the server's own
    return (
        f"{response.status} body={body} complete={response.complete} "
        f"headers={sorted(headers)} then {after}"
    )


GROUPS = {
    "headers": [c for c in RESPONSES if c.startswith(("header-", "app-server", "app-date"))],
    "status": [c for c in RESPONSES if c.startswith(("status-", "500-"))],
    "framing": [
        c
        for c in RESPONSES
        if c.startswith(("content-length-", "app-transfer", "app-connection", "plain"))
        or "chunks" in c
        or c.endswith("-with-body")
        or c == "no-body"
    ],
}


def test_groups_cover_every_response_case() -> None:
    """Every response case of the app belongs to exactly one group."""
    grouped = [case for cases in GROUPS.values() for case in cases]
    assert sorted(grouped) == sorted(RESPONSES)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("group", list(GROUPS))
def test_response_cases(servers: Servers, group: str, strategy: str) -> None:
    """What the client sees of each response the app gives equals what the reference sends."""
    mismatches = []
    for case in GROUPS[group]:
        key = ("response", case)
        if key not in _REFERENCE:
            _REFERENCE[key] = _response_view(servers.reference, case)
        got = _response_view(servers.port(strategy), case)
        if got != _REFERENCE[key]:
            mismatches.append(
                f"  {case}: reference {_REFERENCE[key]!r}\n  {' ' * len(case)}  {strategy:>9} {got!r}"
            )
    if mismatches:
        pytest.fail(
            f"{len(mismatches)} of {len(GROUPS[group])} response cases differ on {strategy}:\n"
            + "\n".join(mismatches),
            pytrace=False,
        )


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_no_header_injection(servers: Servers, strategy: str) -> None:
    """A CR or LF in an app's header value never becomes a header of its own."""
    for case in ("header-injection", "header-lf-injection"):
        view = _response_view(servers.port(strategy), case)
        assert "x-injected" not in view, f"{strategy} {case}: {view}"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_http10_client_gets_no_chunked_response(servers: Servers, strategy: str) -> None:
    """An HTTP/1.0 client gets a streamed body without chunked coding (it cannot decode it)."""
    response = fetch(servers.port(strategy), "GET", "/stream?n=3&delay=0", version="HTTP/1.0")
    assert response.status == 200
    assert "chunked" not in (response.header("Transfer-Encoding") or "").lower()
    assert response.body.count(b"chunk ") == 3, response.body[:200]


INPUT_BODY = b"line one\nline two\n\nlast line without newline"
INPUT_MODES = [
    "read",
    "read-big",
    "read-minus-one",
    "readline",
    "readline-sized",
    "readlines",
    "iterate",
    "small-reads",
]


def _input_view(port: int, mode: str, framing: str) -> Any:
    if framing == "chunked":
        raw = request(
            "POST",
            f"/input?mode={mode}",
            [("Transfer-Encoding", "chunked"), ("Connection", "close")],
            chunked(INPUT_BODY, (7, 3, 20)),
            length=False,
        )
    else:
        raw = request("POST", f"/input?mode={mode}", [("Connection", "close")], INPUT_BODY)
    with Connection(port, timeout=2.0) as conn:
        conn.send(raw)
        try:
            _, response = conn.read_final()
        except TimeoutError:
            return "no response within 2s (a read blocked past the body's end?)"
    if response is None:
        return "closed without response"
    if response.status != 200:
        return f"{response.status} {response.body[:100]!r}"
    return json.loads(response.body)["calls"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_wsgi_input_reads(servers: Servers, strategy: str, framing: str) -> None:
    """``wsgi.input`` read with ``read()``, ``read(n)`` past the end, ``readline()``,
    ``readlines()``, iteration and small reads returns what it returns on the reference,
    and never blocks past the body's end."""
    mismatches = []
    for mode in INPUT_MODES:
        key = ("input", mode, framing)
        if key not in _REFERENCE:
            _REFERENCE[key] = json.dumps(_input_view(servers.reference, mode, framing))
        got = json.dumps(_input_view(servers.port(strategy), mode, framing))
        if got != _REFERENCE[key]:
            mismatches.append(f"  {mode}: reference {_REFERENCE[key]}, {strategy} {got}")
    assert not mismatches, f"{strategy}, {framing} body:\n" + "\n".join(mismatches)


#: strategies that run requests concurrently in one process (threads or greenlets)
CONCURRENT_IN_PROCESS = {"threaded", "gthread", "gevent", "eventlet", "tornado"}


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_wsgi_flags_and_addresses(servers: Servers, strategy: str) -> None:
    """``wsgi.version`` is (1, 0), ``run_once`` false, ``wsgi.errors`` writable,
    ``multithread`` true where requests share a process, and SERVER_NAME/SERVER_PORT and
    REMOTE_ADDR are the real addresses."""
    port = servers.port(strategy)
    seen = fetch(port, "GET", "/wsgi").json()
    assert seen["version"] == [1, 0]
    assert seen["run_once"] is False
    assert seen["errors_writable"] is True
    assert (seen["server_name"], seen["server_port"]) == ("127.0.0.1", str(port))
    assert seen["remote_addr"] == "127.0.0.1"
    if strategy in CONCURRENT_IN_PROCESS:
        assert seen["multithread"] is True, f"{strategy}: wsgi.multithread {seen['multithread']}"
