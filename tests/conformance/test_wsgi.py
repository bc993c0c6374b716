"""PEP 3333 from the app's side, on every strategy: the environ, the response iterable's
life (streaming, ``close()``), ``write()``, ``wsgi.file_wrapper``, app exceptions, HEAD,
and response headers as apps really send them."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conformance.conftest import REFERENCE, STRATEGIES, WITH_REFERENCE, Servers
from tests.conformance.wire import Connection, chunked, fetch, request

pytestmark = [pytest.mark.conformance, pytest.mark.server]


def _wait_for_lines(path: Path, count: int, timeout: float) -> list[str]:
    """The lines of ``path`` once it has ``count`` of them (or whatever it has at ``timeout``)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= count:
                break
        time.sleep(0.02)
    return lines


# -- the environ -------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_validator_passes(servers: Servers, strategy: str, tmp_path: Path) -> None:
    """Requests of every common shape pass ``wsgiref.validate`` around the app."""
    port = servers.port(strategy)
    errors = tmp_path / "validator-errors.txt"
    query = f"errors={quote(str(errors))}"
    payload = b"validated body " * 100
    cases: list[tuple[str, str, list[tuple[str, str]], bytes]] = [
        ("GET", f"/validate/env?{query}&x=1", [("Accept", "*/*")], b""),
        ("HEAD", f"/validate/env?{query}", [], b""),
        ("POST", f"/validate/body?{query}", [("Content-Type", "text/plain")], payload),
        ("PUT", f"/validate/body?{query}", [("Content-Type", "text/plain")], b""),
        ("GET", f"/validate/write?{query}", [], b""),
        ("GET", f"/validate/stream?{query}&n=3&delay=0", [], b""),
    ]
    problems = []
    for method, target, headers, body in cases:
        response = fetch(port, method, target, headers, body)
        if response.status != 200:
            problems.append(
                f"{method} {target.split('?')[0]}: {response.status} {response.body[:300]!r}"
            )
    raw = request(
        "POST",
        f"/validate/body?{query}",
        [("Transfer-Encoding", "chunked"), ("Connection", "close")],
        chunked(payload),
        length=False,
    )
    with Connection(port) as conn:
        conn.send(raw)
        _, final = conn.read_final()
    if final is None or final.status != 200:
        problems.append(f"chunked POST: {final and final.status} {final and final.body[:300]!r}")
    time.sleep(0.2)  # complaints while closing arrive after the response
    if errors.exists():
        problems += [f"recorded: {line}" for line in errors.read_text().splitlines()]
    assert not problems, f"{strategy}: wsgiref.validate complaints:\n" + "\n".join(problems)


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_environ_value_types(servers: Servers, strategy: str) -> None:
    """REMOTE_ADDR, REMOTE_PORT and SERVER_PORT are native strings, as PEP 3333 requires."""
    seen = fetch(servers.port(strategy), "GET", "/env").json()
    types = {key: seen[key] for key in ("remote_addr_type", "remote_port_type", "server_port_type")}
    assert types == {key: "str" for key in types}, f"{strategy}: {types}"


#: requests whose environ must look the same as on the reference
ENVIRON_REQUESTS: list[tuple[str, str, list[tuple[str, str]], bytes, str]] = [
    (
        "GET",
        "/env?a=1&b=%20c&a=2",
        [("User-Agent", "conformance"), ("Accept", "*/*")],
        b"",
        "HTTP/1.1",
    ),
    ("GET", "/env/caf%C3%A9%20x/%2F", [], b"", "HTTP/1.1"),
    ("GET", "/env", [], b"", "HTTP/1.0"),
    (
        "POST",
        "/env",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1&b=2",
        "HTTP/1.1",
    ),
    ("DELETE", "/env?", [("X-Empty", "")], b"", "HTTP/1.1"),
]


def _environ_view(seen: dict[str, Any]) -> dict[str, Any]:
    """The environ keys compared with the reference (an empty CONTENT_* is an absent one)."""
    keys = ("method", "script_name", "path_info", "query", "protocol", "url_scheme")
    view = {key: seen[key] for key in keys}
    view["content_length"] = seen["content_length"] or None
    view["content_type"] = seen["content_type"] or None
    view["http"] = seen["http"]
    return view


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_environ_matches_reference(servers: Servers, strategy: str) -> None:
    """Method, SCRIPT_NAME, PATH_INFO (decoded as latin-1), QUERY_STRING, CONTENT_*, the
    protocol, the scheme and the HTTP_* keys are what bare gunicorn puts in the environ."""
    mismatches = []
    for method, target, headers, body, version in ENVIRON_REQUESTS:
        want = _environ_view(
            fetch(servers.reference, method, target, headers, body, version).json()
        )
        got = _environ_view(
            fetch(servers.port(strategy), method, target, headers, body, version).json()
        )
        if got != want:
            diff = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
            mismatches.append(f"{method} {target} {version}: (reference, {strategy}) = {diff}")
    assert not mismatches, "\n".join(mismatches)


# -- the response iterable ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_streaming(servers: Servers, strategy: str) -> None:
    """A generator's first chunk reaches the client before its last chunk is produced."""
    first_seen = None
    with Connection(servers.port(strategy)) as conn:
        conn.send(request("GET", "/stream?n=5&delay=0.3", [("Connection", "close")]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and conn.fill():
            if first_seen is None and re.search(rb"chunk 0 [0-9.]+\n", conn.buffer):
                first_seen = time.time()
        data = bytes(conn.buffer)
    produced = {int(i): float(t) for i, t in re.findall(rb"chunk (\d+) ([0-9.]+)\n", data)}
    assert sorted(produced) == [0, 1, 2, 3, 4], f"{strategy}: body {data[-300:]!r}"
    assert first_seen is not None
    lead = produced[4] - first_seen
    assert lead > 0.3, (
        f"{strategy}: the first chunk arrived {-lead:.2f}s after the last one was produced "
        f"(the response is buffered, not streamed)"
    )


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_close_after_normal_end(servers: Servers, strategy: str, tmp_path: Path) -> None:
    """The response iterable's ``close()`` is called exactly once after it is exhausted."""
    record = tmp_path / "closed.txt"
    response = fetch(servers.port(strategy), "GET", f"/close?path={quote(str(record))}&n=3")
    assert response.status == 200 and response.complete
    assert len(response.body) == 3 * 1024
    _wait_for_lines(record, 1, timeout=3)
    time.sleep(0.3)  # a second close() would come right after the first
    lines = record.read_text().splitlines() if record.exists() else []
    assert len(lines) == 1, f"{strategy}: close() calls recorded: {lines}"
    assert lines[0].split()[1] == "3"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_close_after_client_disconnect(servers: Servers, strategy: str, tmp_path: Path) -> None:
    """When the client goes away mid-response, iteration stops and ``close()`` is called
    within a second."""
    record = tmp_path / "closed.txt"
    target = f"/close?path={quote(str(record))}&n=100&delay=0.05&size=1024"
    with Connection(servers.port(strategy)) as conn:
        conn.send(request("GET", target, [("Connection", "close")]))
        deadline = time.monotonic() + 10
        while b"xxxx\n" not in conn.buffer and time.monotonic() < deadline:
            assert conn.fill(), f"{strategy}: connection ended before the first chunk"
    disconnected = time.time()
    lines = _wait_for_lines(record, 1, timeout=8)
    assert lines, f"{strategy}: close() not called within 8s of the client's disconnect"
    closed_at, yielded = lines[0].split()
    delay = float(closed_at) - disconnected
    assert delay < 1.0, (
        f"{strategy}: close() came {delay:.2f}s after the disconnect, after {yielded} of 100 chunks"
    )
    assert int(yielded) < 100


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_slow_reader_holds_back_the_app(servers: Servers, strategy: str, tmp_path: Path) -> None:
    """A client that stops reading stops the app's iteration (back-pressure): a 256 MiB
    response is not produced into the server's memory while the client reads 1 MiB."""
    record = tmp_path / "closed.txt"
    target = f"/close?path={quote(str(record))}&n=4096&delay=0&size=65536"
    with Connection(servers.port(strategy)) as conn:
        conn.send(request("GET", target, [("Connection", "close")]))
        while len(conn.buffer) < 1024 * 1024:
            assert conn.fill(), f"{strategy}: connection ended early"
        time.sleep(1.0)
    lines = _wait_for_lines(record, 1, timeout=8)
    assert lines, f"{strategy}: close() not called after the client left"
    produced_mib = int(lines[0].split()[1]) * 65536 / (1024 * 1024)
    assert produced_mib < 64, (
        f"{strategy}: the app had produced {produced_mib:.0f} MiB for a client that read 1 MiB"
    )


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_write_callable(servers: Servers, strategy: str) -> None:
    """Bytes passed to ``start_response``'s ``write()`` come first, then the iterable's."""
    response = fetch(servers.port(strategy), "GET", "/write")
    assert (response.status, response.body, response.complete) == (200, b"one,two,three", True)


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_file_wrapper(servers: Servers, strategy: str, tmp_path: Path) -> None:
    """``wsgi.file_wrapper`` is offered, sends the whole file, and closes it."""
    data = hashlib.sha256(b"seed").digest() * 10000  # 320 000 bytes
    source = tmp_path / "payload.bin"
    source.write_bytes(data)
    record = tmp_path / "file-closed.txt"
    target = f"/file?file={quote(str(source))}&close={quote(str(record))}"
    response = fetch(servers.port(strategy), "GET", target)
    assert response.status == 200, f"{strategy}: {response.status} {response.body[:200]!r}"
    assert response.complete and len(response.body) == len(data)
    assert response.body == data
    assert _wait_for_lines(record, 1, timeout=3) == ["closed"], f"{strategy}: file not closed"


# -- app exceptions ----------------------------------------------------------------------

FIRST_PART = b"first part of the body\n"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
@pytest.mark.parametrize("when", ["before", "after-start"])
def test_exception_before_any_byte_is_a_500(servers: Servers, strategy: str, when: str) -> None:
    """An exception before the first body byte (before or after ``start_response``) is a 500."""
    response = fetch(servers.port(strategy), "GET", f"/raise?when={when}")
    assert response.status == 500, f"{strategy}: {response.status} {response.body[:200]!r}"
    assert response.complete


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
@pytest.mark.parametrize("when", ["after-body", "after-body-cl"])
def test_exception_after_body_bytes_truncates(servers: Servers, strategy: str, when: str) -> None:
    """An exception after body bytes went out ends the connection: the 200 is visibly cut
    short (by its framing, or, close-delimited, without anything added after the first part).
    Asked ten times: a server that can lose the bytes before the cut loses them sometimes."""
    for _ in range(10):
        _check_cut_short(servers.port(strategy), strategy, when)


def _check_cut_short(port: int, strategy: str, when: str) -> None:
    with Connection(port) as conn:
        conn.send(request("GET", f"/raise?when={when}", [("Connection", "close")]))
        _, response = conn.read_final()
        assert response is not None, f"{strategy}: no response at all"
        closed = conn.closes_within(2.0)
    assert response.status == 200, f"{strategy}: {response.status} {response.body[:200]!r}"
    delimited = response.header("Content-Length") is None and "chunked" not in (
        response.header("Transfer-Encoding") or ""
    )
    if delimited:
        assert response.body == FIRST_PART, f"{strategy}: {response.body[:200]!r}"
    else:
        assert not response.complete, f"{strategy}: a complete response {response.body[:200]!r}"
    assert response.body.startswith(FIRST_PART[: len(response.body)])
    assert closed, f"{strategy}: connection left open after the failed response"


# -- HEAD and response headers -------------------------------------------------------------


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
@pytest.mark.parametrize("target", ["/head", "/head?stream=1"])
def test_head_has_no_body(servers: Servers, strategy: str, target: str) -> None:
    """A HEAD response carries no body, even though the app returns one."""
    with Connection(servers.port(strategy)) as conn:
        conn.send(request("HEAD", target, [("Connection", "close")]))
        _, response = conn.read_final("HEAD")
        assert response is not None
        while conn.fill(2.0):
            pass
        extra = bytes(conn.buffer)
    assert response.status == 200
    assert extra == b"", (
        f"{strategy}: {len(extra)} bytes after the HEAD response head: {extra[:80]!r}"
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_head_headers_match_reference(servers: Servers, strategy: str) -> None:
    """A HEAD response's Content-Length is the one a GET would have (as on the reference)."""
    want = fetch(servers.reference, "HEAD", "/head").header("Content-Length")
    got = fetch(servers.port(strategy), "HEAD", "/head").header("Content-Length")
    assert (got, want) == ("100", "100")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_django_set_cookie(servers: Servers, strategy: str) -> None:
    """Django's ``Set-Cookie`` values (with a leading space) are sent, stripped, as on the reference."""
    want = fetch(servers.reference, "GET", "/cookie")
    got = fetch(servers.port(strategy), "GET", "/cookie")
    assert want.status == 200
    assert (got.status, got.body) == (200, b"cookie"), f"{got.status} {got.body[:200]!r}"
    assert got.header_all("Set-Cookie") == want.header_all("Set-Cookie")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_duplicate_content_type(servers: Servers, strategy: str) -> None:
    """Two Content-Type headers from the app go out as on the reference (not joined)."""
    want = fetch(servers.reference, "GET", "/content-type")
    got = fetch(servers.port(strategy), "GET", "/content-type")
    assert got.status == want.status == 200
    assert got.header_all("Content-Type") == want.header_all("Content-Type")


def test_reference_is_gunicorn(servers: Servers) -> None:
    """The reference really is bare gunicorn (its Server header says so)."""
    server_header = fetch(servers.reference, "GET", "/ping").header("Server") or ""
    assert server_header.startswith("gunicorn"), (REFERENCE, server_header)
