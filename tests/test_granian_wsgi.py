"""servekit's WSGI layer beneath granian, driven with granian's calling convention (no server).

granian calls ``handle(proto, scope)`` with a dict of the request's CGI keys and a
``proto`` whose ``response_bytes``/``response_iter`` take the status, the headers and
the body; :class:`FakeProto` records them as granian would send them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servekit.access import TrustedProxies
from servekit.backends.granian.environ import RequestPolicy
from servekit.backends.granian.streams import FileWrapper, Input
from servekit.backends.granian.wsgi import AccessLog, make_handler

App = Callable[[dict[str, Any], Callable[..., Any]], Any]


class FakeBody:
    """granian's request body: ``read(n)`` (blocks for n bytes or the end) and ``readline()``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int) -> bytes:
        out, self.data = self.data[:size], self.data[size:]
        return out

    def readline(self) -> bytes:
        end = self.data.find(b"\n")
        cut = len(self.data) if end < 0 else end + 1
        out, self.data = self.data[:cut], self.data[cut:]
        return out


class FakeProto:
    """Records what granian would send: status, headers, body, and whether close() came."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.closed = 0

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def response_iter(self, status: int, headers: list[tuple[str, str]], body: Any) -> None:
        self.status, self.headers = status, headers
        chunks = []
        try:
            while True:
                chunks.append(body.__next__())
        except StopIteration:
            pass
        body.close()
        self.closed += 1
        self.body = b"".join(chunks)

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


def scope(
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    protocol: str = "HTTP/1.1",
    peer: str = "127.0.0.1",
    query: str = "",
) -> dict[str, Any]:
    """A request scope as granian 2.8 builds it (headers already as HTTP_* keys)."""
    found = {
        "SERVER_PROTOCOL": protocol,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": peer,
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.url_scheme": "http",
        "wsgi.input": FakeBody(body),
        "HTTP_HOST": "localhost",
    }
    found.update(headers or {})
    return found


def serve_one(app: App, request: dict[str, Any], trusted: str = "127.0.0.1,::1") -> FakeProto:
    """One request through servekit's handler, as a granian worker would make it."""
    policy = RequestPolicy(TrustedProxies(trusted), multiprocess=True, unix=False)
    handler = make_handler(app, policy, AccessLog(False, TrustedProxies(trusted), ()))
    proto = FakeProto()
    handler(proto, request)
    return proto


def echo_environ(seen: dict[str, Any]) -> App:
    """An app that stores its environ in ``seen`` and answers 200."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


# -- the environ ---------------------------------------------------------------------------


def test_environ_holds_the_request_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key of the process environment reaches the environ (granian copies os.environ)."""
    monkeypatch.setenv("HTTP_X_LEAK", "1")
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    seen: dict[str, Any] = {}
    assert serve_one(echo_environ(seen), scope()).status == 200
    assert "HTTP_X_LEAK" not in seen and "SECRET_TOKEN" not in seen
    assert not {key for key in seen if key in os.environ}
    assert seen["wsgi.multiprocess"] is True and seen["wsgi.file_wrapper"] is FileWrapper


def test_http_1_0_is_named_as_pep_3333_says() -> None:
    """granian's ``HTTP/1`` becomes ``HTTP/1.0``."""
    seen: dict[str, Any] = {}
    serve_one(echo_environ(seen), scope(protocol="HTTP/1"))
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.0"


@pytest.mark.parametrize(
    ("peer", "headers", "scheme"),
    [
        ("127.0.0.1", {"HTTP_X_FORWARDED_PROTO": "https"}, "https"),
        ("127.0.0.1", {"HTTP_X_FORWARDED_SSL": "on"}, "https"),
        ("127.0.0.1", {"HTTP_X_FORWARDED_PROTO": "http"}, "http"),
        ("10.1.2.3", {"HTTP_X_FORWARDED_PROTO": "https"}, "http"),
    ],
)
def test_scheme_from_trusted_proxies_only(peer: str, headers: dict[str, str], scheme: str) -> None:
    """X-Forwarded-Proto/-Ssl set wsgi.url_scheme only when the peer is trusted."""
    seen: dict[str, Any] = {}
    serve_one(echo_environ(seen), scope(headers=headers, peer=peer))
    assert seen["wsgi.url_scheme"] == scheme


def test_conflicting_scheme_headers_are_a_400() -> None:
    """Repeated scheme headers that disagree are refused, as gunicorn refuses them."""
    proto = serve_one(echo_environ({}), scope(headers={"HTTP_X_FORWARDED_PROTO": "https,http"}))
    assert proto.status == 400 and proto.header("Connection") == "close"


def test_script_name_from_a_trusted_proxy_splits_the_path() -> None:
    """A trusted peer's SCRIPT_NAME header moves the prefix from PATH_INFO to SCRIPT_NAME."""
    seen: dict[str, Any] = {}
    serve_one(echo_environ(seen), scope("/mount/x", headers={"HTTP_SCRIPT_NAME": "/mount"}))
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/mount", "/x")


@pytest.mark.parametrize(
    ("request_scope", "status"),
    [
        (scope(method="get"), 400),
        (scope(method="AAAAAAAAAAAAAAAAAAAAAAAAA"), 400),
        (scope(headers={"HTTP_HOST": "a,b"}), 400),
        (scope(headers={"HTTP_EXPECT": "something-else"}), 417),
        (scope(method="POST", headers={"HTTP_TRANSFER_ENCODING": "chunked, chunked"}), 400),
        (scope(method="POST", headers={"HTTP_TRANSFER_ENCODING": "x-custom"}), 501),
        (scope(query="a" * 5000), 414),
        (scope(headers={"HTTP_X_LONG": "v" * 9000}), 431),
        (scope(path="*"), 400),
    ],
)
def test_requests_gunicorn_refuses_are_refused(request_scope: dict[str, Any], status: int) -> None:
    """What gunicorn refuses after parsing, and granian lets through, is refused with its status."""
    seen: dict[str, Any] = {}
    proto = serve_one(echo_environ(seen), request_scope)
    assert proto.status == status and not seen
    assert proto.body.startswith(b"<html>")


def test_missing_host_is_absent_not_empty() -> None:
    """granian's empty stand-in for a missing Host is removed, as gunicorn has no HTTP_HOST."""
    seen: dict[str, Any] = {}
    serve_one(echo_environ(seen), scope(headers={"HTTP_HOST": ""}, protocol="HTTP/1"))
    assert "HTTP_HOST" not in seen


# -- wsgi.input ----------------------------------------------------------------------------

BODY = b"line one\nline two\n\nlast line without newline"


def test_input_reads_as_gunicorns_body_does() -> None:
    """read(-1), read(n) past the end, readline(size), readlines() and iteration."""
    assert Input(FakeBody(BODY)).read(-1) == BODY
    stream = Input(FakeBody(BODY))
    assert (stream.read(1 << 20), stream.read(10)) == (BODY, b"")
    stream = Input(FakeBody(BODY))
    assert (stream.readline(3), stream.readline(100)) == (b"lin", b"e one\n")
    assert Input(FakeBody(BODY)).readlines() == BODY.splitlines(keepends=True)
    assert list(Input(FakeBody(BODY))) == BODY.splitlines(keepends=True)
    with pytest.raises(TypeError):
        Input(FakeBody(BODY)).read("3")  # type: ignore[arg-type]


# -- start_response and the body -----------------------------------------------------------


def lazy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    """A generator that calls start_response on its first iteration."""
    start_response("201 Created", [("X-A", " b "), ("Content-Type", "text/plain")])
    yield b"a"
    yield b""
    yield b"b"


def test_lazy_start_response_gets_its_own_status_and_headers() -> None:
    """A generator's status and headers are sent, not granian's 200 with none."""
    proto = serve_one(lazy, scope())
    assert (proto.status, proto.body, proto.closed) == (201, b"ab", 1)
    assert proto.header("X-A") == "b"  # stripped, as gunicorn strips


def test_write_comes_before_the_iterable() -> None:
    """Bytes given to write() are sent first, then the iterable's."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"one,")
        write(b"two,")
        return [b"three"]

    assert serve_one(app, scope()).body == b"one,two,three"


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", "b\r\nX-Injected: 1")],
        [("X A", "b")],
        [("X-A", "caf\u00e9")],
        [("X-A", "\u20ac")],
        [("Content-Length", "12a")],
    ],
)
def test_headers_gunicorn_would_not_send_are_a_500(headers: list[tuple[str, str]]) -> None:
    """An invalid (or, on granian, unsendable latin-1) header is a logged 500, not a silent drop."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", headers)
        return [b"body"]

    proto = serve_one(app, scope())
    assert proto.status == 500 and b"Internal Server Error" in proto.body


@pytest.mark.parametrize("status", ["2000 Big", "OK", "20 X"])
def test_invalid_status_is_a_500(status: str) -> None:
    """A status that is not three digits is refused (granian sent it as given)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(status, [])
        return [b"body"]

    assert serve_one(app, scope()).status == 500


def test_exception_before_the_body_is_a_500_and_closes_the_iterable() -> None:
    """An app error before any byte went out: 500, and the iterable's close() is called."""
    closed = []

    class Failing:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("boom")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Failing:
        start_response("200 OK", [])
        return Failing()

    assert serve_one(app, scope()).status == 500
    assert closed == [True]


def test_no_body_for_204_and_304_and_no_length_for_204() -> None:
    """1xx/204/304 responses carry no body; 204 also no Content-Length."""

    def app(code: str) -> App:
        def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            start_response(code, [("Content-Length", "4")])
            yield b"nope"

        return inner

    no_content = serve_one(app("204 No Content"), scope())
    assert (no_content.status, no_content.body, no_content.header("Content-Length")) == (
        204,
        b"",
        None,
    )
    not_modified = serve_one(app("304 Not Modified"), scope())
    assert (not_modified.status, not_modified.body) == (304, b"")


def test_body_stops_at_the_declared_length() -> None:
    """Bytes beyond the app's Content-Length are not sent (gunicorn's rule)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        yield b"more than five"

    assert serve_one(app, scope()).body == b"more "


def test_exc_info_replaces_the_response_before_it_is_sent() -> None:
    """start_response with exc_info before the body went out replaces status and headers."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("X-A", "1")])
        try:
            raise ValueError("late")
        except ValueError:
            import sys

            start_response("503 Service Unavailable", [("X-B", "2")], sys.exc_info())
        return [b"sorry"]

    proto = serve_one(app, scope())
    assert (proto.status, proto.header("X-A"), proto.header("X-B")) == (503, None, "2")


def test_file_wrapper_sends_the_file_and_closes_it() -> None:
    """wsgi.file_wrapper streams the whole file in blocks and closes it with the response."""
    data = os.urandom(200_000)
    source = io.BytesIO(data)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](source, 4096)

    proto = serve_one(app, scope())
    assert proto.body == data and source.closed
