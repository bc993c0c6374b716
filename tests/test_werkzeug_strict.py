"""The werkzeug strategies parse requests as strictly as bare gunicorn sync (issue 10).

Each expected status here is what gunicorn 27's sync worker answers to the same bytes
(measured against it; ``tests/conformance`` compares the two on every run). The first
half checks the head and chunked readers on bytes in memory, the second real servers
over raw sockets.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

import pytest

from servekit.backends.werkzeug.body import ChunkedBody
from servekit.backends.werkzeug.head import Incomplete, Refusal, RequestHead, Trust, read_head
from servekit.testing import RunningServer, running
from tests.conftest import ROOT

H = b"Host: x\r\n"


def _head(raw: bytes, trusted: bool = False) -> RequestHead | None:
    return read_head(io.BufferedReader(io.BytesIO(raw)), trusted)


def _status(raw: bytes) -> int:
    """The status a head gets: 200 when accepted, else the refusal's."""
    try:
        _head(raw)
    except Refusal as refusal:
        return refusal.status.value
    return 200


REFUSED: dict[str, tuple[bytes, int]] = {
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "two Content-Types": (
        b"GET / HTTP/1.1\r\n" + H + b"Content-Type: a\r\nContent-Type: a\r\n\r\n",
        400,
    ),
    "TE gzip": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "TE chunked, gzip": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    "TE chunked twice": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
        400,
    ),
    "TE unknown": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: foo\r\n\r\n", 501),
    "TE chunked on HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "CL and TE": (
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    "CL twice, same": (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    "CL +5": (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
    "CL superscript two": (b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),
    "NUL in target": (b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CTL in value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    "name not a token": (b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    "bare LF": (b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    "HTTP/0.9": (b"GET /\r\n\r\n", 400),
    "HTTP/0.99": (b"GET / HTTP/0.99\r\n" + H + b"\r\n", 400),
    "HTTP/1.10": (b"GET / HTTP/1.10\r\n" + H + b"\r\n", 400),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 400),
    "lower-case method": (b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "asterisk with GET": (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    "authority-form with GET": (b"GET x:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    "relative target": (b"GET c HTTP/1.1\r\n" + H + b"\r\n", 400),
    "Expect other than 100-continue": (b"GET / HTTP/1.1\r\n" + H + b"Expect: x\r\n\r\n", 417),
    "request line of 4095": (b"GET /" + b"a" * 4081 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "field line of 8191": (b"GET / HTTP/1.1\r\nX-L: " + b"v" * 8184 + b"\r\n\r\n", 431),
    "101 fields": (
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
        431,
    ),
}

ACCEPTED: dict[str, bytes] = {
    "request line of 4094": b"GET /" + b"a" * 4080 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "field line of 8190": b"GET / HTTP/1.1\r\nX-L: " + b"v" * 8183 + b"\r\n\r\n",
    "100 fields": b"GET / HTTP/1.1\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(100))
    + b"\r\n",
    "one empty line first": b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "HTTP/1.9": b"GET / HTTP/1.9\r\n" + H + b"\r\n",
    "OPTIONS *": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    "CONNECT authority": b"CONNECT x:443 HTTP/1.1\r\n" + H + b"\r\n",
    "absolute-form": b"GET http://x/a?b HTTP/1.1\r\n" + H + b"\r\n",
    "gzip, chunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    "obs-text value": b"GET / HTTP/1.1\r\n" + H + b"X-A: caf\xc3\xa9\r\n\r\n",
    "leading zeros in CL": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 005\r\n\r\n",
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_like_gunicorn(case: str) -> None:
    """What gunicorn sync refuses is refused, with gunicorn's status."""
    raw, status = REFUSED[case]
    assert _status(raw) == status


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted_like_gunicorn(case: str) -> None:
    """What gunicorn sync accepts (RFC 9112 allows it) is accepted."""
    assert _status(ACCEPTED[case]) == 200


def test_underscored_names_are_dropped_unless_from_a_proxy() -> None:
    """X_Forwarded_For never reaches the app; SCRIPT_NAME only from a trusted peer."""
    raw = b"GET / HTTP/1.1\r\nX_Forwarded_For: 1\r\nSCRIPT_NAME: /a\r\nX-A: 1\r\n\r\n"
    assert [name for name, _ in _head(raw).fields] == ["X-A"]  # type: ignore[union-attr]
    trusted = _head(raw, trusted=True)
    assert trusted is not None and [n for n, _ in trusted.fields] == ["SCRIPT_NAME", "X-A"]


def test_proxies_trusted_as_by_gunicorn() -> None:
    """Loopback (gunicorn's default forwarded_allow_ips) and unix peers are trusted."""
    trust = Trust()
    assert trust.trusts(("127.0.0.1", 5)) and trust.trusts(("::1", 5, 0, 0)) and trust.trusts("")
    assert not trust.trusts(("10.0.0.1", 5))
    assert Trust("10.0.0.0/8").trusts(("10.1.2.3", 5)) and Trust("*").trusts(("8.8.8.8", 5))


def test_incomplete_head_is_not_answered() -> None:
    """A client that closes in the middle of the head gets no response (as with gunicorn)."""
    assert _head(b"") is None
    with pytest.raises(Incomplete):
        _head(b"GET / HTTP/1.1\r\nHost: x\r\n")


def _dechunk(raw: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    chunked = ChunkedBody(io.BufferedReader(io.BytesIO(raw)))
    return io.BufferedReader(chunked).read(), chunked.trailers


def test_chunk_extensions_and_trailers_are_read() -> None:
    """Chunk extensions (RFC 9112 7.1.1) and a trailer section are read, not a 500."""
    raw = b'5;a=b;c="d e"\r\nhello\r\n6 ;x\r\n world\r\n0\r\nX-T: 1\r\n\r\n'
    assert _dechunk(raw) == (b"hello world", [("X-T", "1")])


BAD_CHUNKS = [b"+5\r\nhello\r\n0\r\n\r\n", b"1_0\r\n", b" 5\r\n", b"5 \r\n", b"0x5\r\n", b"5;\r\n"]
BAD_CHUNKS += [b"5\r\nhelloX\r\n0\r\n\r\n", b"0\r\nHost: x\r\n\r\n", b"0\r\n"]


@pytest.mark.parametrize("raw", BAD_CHUNKS)
def test_bad_chunks_are_a_400(raw: bytes) -> None:
    """Signs, underscores, spaces, ``0x``, bad extensions, framing trailers: 400."""
    with pytest.raises(Refusal) as info:
        _dechunk(raw)
    assert info.value.status == 400


# -- real servers -------------------------------------------------------------------------


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Echo what the app saw: environ types, body length and hash, multipart files."""
    if environ["PATH_INFO"] == "/multipart":
        from werkzeug.formparser import parse_form_data

        _, form, files = parse_form_data(environ)
        data: dict[str, Any] = {name: len(f.read()) for name, f in files.items()} | dict(
            form.items()
        )
    else:
        body = environ["wsgi.input"].read(-1)  # the validator wants one argument
        data = {
            "length": len(body),
            "sha": hashlib.sha256(body).hexdigest(),
            "remote_port": type(environ.get("REMOTE_PORT")).__name__,
            "terminated": environ.get("wsgi.input_terminated"),
            "http": sorted(k for k in environ if k.startswith("HTTP_")),
        }
    out = json.dumps(data).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    )
    return [out]


validated = validator(app)


@pytest.fixture(scope="module", params=["dev", "threaded", "processes"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server per werkzeug strategy, the app behind ``wsgiref.validate``."""
    options: dict[str, Any] = {"workers": 2} if request.param == "processes" else {}
    with running(
        "tests.test_werkzeug_strict:validated",
        request.param,
        cwd=ROOT,
        log_dir=tmp_path_factory.mktemp(request.param),
        **options,
    ) as running_server:
        yield running_server


def _send(server: RunningServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, read to the server's close; status, headers, and what followed the head."""
    host, port = server.url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, rest = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, rest


@pytest.mark.server
def test_multipart_upload_is_served(server: RunningServer) -> None:
    """multipart/form-data is no longer refused as a malformed header line."""
    part = b"x" * 5000
    body = (
        b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n'
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="f.bin"\r\n\r\n'
        + part
        + b"\r\n--B--\r\n"
    )
    raw = (
        b"POST /multipart HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
    )
    status, _, rest = _send(server, raw + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert (status, json.loads(rest)) == (200, {"f": 5000, "a": "v"})


@pytest.mark.server
def test_environ_passes_the_validator(server: RunningServer) -> None:
    """REMOTE_PORT is a str, a chunked body arrives whole, X_Forwarded_For is dropped."""
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX_Forwarded_For: 1\r\n\r\n"
    status, _, rest = _send(server, raw + b"5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
    seen = json.loads(rest)
    assert status == 200, rest
    assert seen["sha"] == hashlib.sha256(b"hello").hexdigest()
    assert (seen["remote_port"], seen["terminated"]) == ("str", True)
    assert seen["http"] == ["HTTP_HOST", "HTTP_TRANSFER_ENCODING"]


@pytest.mark.server
def test_head_has_no_body(server: RunningServer) -> None:
    """HEAD: the GET's headers (Content-Length included), no body bytes."""
    status, headers, rest = _send(server, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, rest) == (200, b"")
    assert int(headers["content-length"]) > 0


@pytest.mark.server
@pytest.mark.parametrize(
    "case", ["two Host headers", "TE unknown", "request line of 4095", "101 fields"]
)
def test_refusal_on_the_wire(server: RunningServer, case: str) -> None:
    """A refused request gets gunicorn's status and the connection closes."""
    raw, expected = REFUSED[case]
    status, headers, _ = _send(server, raw)
    assert (status, headers["connection"]) == (expected, "close")


@pytest.mark.server
def test_bad_chunk_is_a_400(server: RunningServer) -> None:
    """A bad chunk size the app reads into is a 400, not a 500."""
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n"
    assert _send(server, raw + b"helloworldhello!\r\n0\r\n\r\n")[0] == 400
