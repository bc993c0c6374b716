"""Request bodies on every strategy: 1 MiB uploads by Content-Length and chunked,
``Expect: 100-continue``, and a multipart form with a file."""

from __future__ import annotations

import hashlib
import random

import pytest

from tests.conformance.conftest import STRATEGIES, WITH_REFERENCE, Servers
from tests.conformance.wire import Connection, Response, chunked, fetch, request

pytestmark = [pytest.mark.conformance, pytest.mark.server]

MIB = 1024 * 1024
PAYLOAD = random.Random(10).randbytes(MIB)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _seen(response: Response | None) -> tuple[int | None, int | None, str | None]:
    """(status, body length the app saw, its sha256) of an echo response."""
    if response is None:
        return None, None, None
    if response.status != 200:
        return response.status, None, None
    seen = response.json()
    return 200, seen["length"], seen["sha256"]


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_upload_content_length(servers: Servers, strategy: str) -> None:
    """A 1 MiB body sent with Content-Length reaches the app whole."""
    response = fetch(servers.port(strategy), "POST", "/upload", body=PAYLOAD)
    assert _seen(response) == (200, MIB, PAYLOAD_SHA), f"{strategy}: {response.body[:300]!r}"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_upload_chunked(servers: Servers, strategy: str) -> None:
    """A 1 MiB chunked body (chunks of 1 B to 64 KiB) reaches the app whole, read to its end
    as the server's ``wsgi.input_terminated`` (or a Content-Length it sets) allows."""
    raw = request(
        "POST",
        "/upload",
        [("Transfer-Encoding", "chunked"), ("Connection", "close")],
        chunked(PAYLOAD),
        length=False,
    )
    with Connection(servers.port(strategy)) as conn:
        conn.send(raw)
        _, response = conn.read_final()
    assert response is not None
    assert _seen(response) == (200, MIB, PAYLOAD_SHA), f"{strategy}: {response.body[:300]!r}"


Expectation = tuple[str, tuple[int | None, int | None, str | None]]
_REFERENCE_EXPECT: dict[str, Expectation] = {}


def _expect_continue(port: int, version: str) -> Expectation:
    """Send a head with ``Expect: 100-continue``, wait up to a second for an interim
    answer, then send the body; return whether a 100 came (before the body or, late,
    after it) and the final outcome."""
    body = PAYLOAD[: 64 * 1024]
    head = request(
        "POST",
        "/upload",
        [("Expect", "100-continue"), ("Content-Length", str(len(body))), ("Connection", "close")],
        version=version,
        length=False,
    )
    with Connection(port) as conn:
        conn.send(head)
        try:
            first = conn.read_response(first_byte_timeout=1.0)
        except TimeoutError:
            first = None
        if first is not None and first.status >= 200:
            return f"final {first.status} before the body", _seen(first)
        conn.send(body)
        interim, final = conn.read_final()
    statuses = [r.status for r in ([first] if first else []) + interim]
    return ("100 Continue" if 100 in statuses else f"interim {statuses}"), _seen(final)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_expect_100_continue(servers: Servers, strategy: str, version: str) -> None:
    """``Expect: 100-continue`` gets the interim 100 where the reference sends one
    (HTTP/1.1), none where it does not (HTTP/1.0), and the body arrives whole."""
    if version not in _REFERENCE_EXPECT:
        _REFERENCE_EXPECT[version] = _expect_continue(servers.reference, version)
    want = _REFERENCE_EXPECT[version]
    got = _expect_continue(servers.port(strategy), version)
    assert want[1][:2] == (200, 64 * 1024)
    assert got == want, f"{strategy} {version}: got {got}, reference {want}"


MULTIPART_FILE = PAYLOAD[: 200 * 1024]


def _multipart(boundary: str) -> bytes:
    """A form with a text field and a 200 KiB file."""
    b = boundary.encode()
    return (
        b"--" + b + b'\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello world\r\n'
        b"--" + b + b'\r\nContent-Disposition: form-data; name="upload"; filename="data.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + MULTIPART_FILE + b"\r\n"
        b"--" + b + b"--\r\n"
    )


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_multipart_upload(servers: Servers, strategy: str) -> None:
    """A ``multipart/form-data`` upload reaches the app and parses into the field and the file."""
    boundary = "conformance-boundary-42"
    response = fetch(
        servers.port(strategy),
        "POST",
        "/multipart",
        [("Content-Type", f"multipart/form-data; boundary={boundary}")],
        _multipart(boundary),
    )
    assert response.status == 200, f"{strategy}: {response.status} {response.body[:300]!r}"
    assert response.json() == {
        "form": {"title": "hello world"},
        "files": {
            "upload": [
                "data.bin",
                len(MULTIPART_FILE),
                hashlib.sha256(MULTIPART_FILE).hexdigest(),
            ]
        },
    }
