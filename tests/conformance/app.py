"""The WSGI app the conformance suite serves on every strategy and on bare gunicorn.

Routes (by ``PATH_INFO``; anything else echoes the request body):

- ``/ping``: ``pong``.
- ``/env``: the environ keys a conformance test compares, as JSON.
- ``/validate/...``: the same routes behind :func:`wsgiref.validate.validator`; a
  validator complaint becomes a 500 whose body names it (and, with ``errors=PATH``
  in the query, a line in that file, also for complaints while iterating or closing).
- ``/stream?n=&delay=``: a generator yielding ``chunk I TIME`` lines ``delay`` apart.
- ``/close?path=&n=&delay=&size=``: an iterable whose ``close()`` appends
  ``TIME YIELDED`` to ``path``.
- ``/write``: body written through ``start_response``'s ``write()``, then returned.
- ``/file?file=&close=``: ``wsgi.file_wrapper`` around ``file`` (``close()`` recorded).
- ``/raise?when=before|after-start|after-body|after-body-cl``: an app exception.
- ``/cookie``: ``Set-Cookie`` values as Django emits them (a leading space).
- ``/content-type``: two ``Content-Type`` response headers.
- ``/head``: a 100-byte body (``?stream=1``: from a generator, without Content-Length).
- ``/multipart``: ``multipart/form-data`` parsed with werkzeug's form parser.
- ``/respond?case=``: one of :data:`RESPONSES`, sent as the app gives it.
- ``/input?mode=``: ``wsgi.input`` read with ``read()``, ``readline()``, iteration ...
- ``/wsgi``: the ``wsgi.*`` flags and the SERVER_* / REMOTE_ADDR values.
- default: the body read as Flask reads it, echoed as length and sha256 with the
  method, path and query.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs
from wsgiref.validate import WSGIWarning, validator

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

# A validator warning (e.g. an unknown key type) is a failure as much as its assertions.
warnings.filterwarnings("error", category=WSGIWarning)

_JSON = [("Content-Type", "application/json")]


def _query(environ: Environ) -> dict[str, str]:
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _respond_json(start_response: StartResponse, data: Any, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(data, sort_keys=True).encode()
    start_response(status, [*_JSON, ("Content-Length", str(len(body)))])
    return [body]


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


#: a body longer than this is refused by the app (a server that invents body bytes, e.g.
#: from a huge chunk size and the connection's end, must not take the machine's memory)
BODY_LIMIT = 16 * 1024 * 1024


def read_chunks(environ: Environ) -> Iterator[bytes]:
    """The request body as Flask/werkzeug reads it: to the end when the server says the
    input is terminated, else ``CONTENT_LENGTH`` bytes, else nothing.

    Raises:
        RuntimeError: more than :data:`BODY_LIMIT` bytes.
    """
    stream = environ["wsgi.input"]
    total = 0
    if environ.get("wsgi.input_terminated"):
        remaining = None
    else:
        length_text = environ.get("CONTENT_LENGTH") or ""
        remaining = int(length_text) if length_text else 0
    while remaining is None or remaining > 0:
        chunk = stream.read(65536 if remaining is None else min(65536, remaining))
        if not chunk:
            return
        total += len(chunk)
        if total > BODY_LIMIT:
            raise RuntimeError(f"conformance app: request body over {BODY_LIMIT} bytes")
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def describe(environ: Environ) -> dict[str, Any]:
    """The environ keys the suite compares between servers."""
    return {
        "method": environ.get("REQUEST_METHOD"),
        "script_name": environ.get("SCRIPT_NAME"),
        "path_info": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "content_type": environ.get("CONTENT_TYPE"),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "url_scheme": environ.get("wsgi.url_scheme"),
        "input_terminated": environ.get("wsgi.input_terminated"),
        "remote_addr_type": type(environ.get("REMOTE_ADDR")).__name__,
        "remote_port_type": type(environ.get("REMOTE_PORT")).__name__,
        "server_port_type": type(environ.get("SERVER_PORT")).__name__,
        "has_file_wrapper": "wsgi.file_wrapper" in environ,
        "http": {key: value for key, value in environ.items() if key.startswith("HTTP_")},
    }


def env_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/env``: the environ description as JSON."""
    return _respond_json(start_response, describe(environ))


def echo_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Default route: what the app saw of the request and its body."""
    digest = hashlib.sha256()
    length = 0
    for chunk in read_chunks(environ):
        digest.update(chunk)
        length += len(chunk)
    return _respond_json(
        start_response,
        {
            "method": environ.get("REQUEST_METHOD"),
            "script_name": environ.get("SCRIPT_NAME"),
            "path_info": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING"),
            "length": length,
            "sha256": digest.hexdigest(),
            "content_length": environ.get("CONTENT_LENGTH"),
            "content_type": environ.get("CONTENT_TYPE"),
            "input_terminated": bool(environ.get("wsgi.input_terminated")),
            "headers": sorted(
                (key, value) for key, value in environ.items() if key.startswith("HTTP_")
            ),
        },
    )


def ping_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/ping``: a fixed short answer."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"pong"]


def stream_app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """``/stream``: ``n`` lines ``delay`` seconds apart, each with the time it was produced."""
    query = _query(environ)
    count = int(query.get("n", "5"))
    delay = float(query.get("delay", "0.3"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    for index in range(count):
        if index:
            time.sleep(delay)
        yield f"chunk {index} {time.time():.6f}\n".encode()


class ClosingBody:
    """A response iterable that records when (and after how many chunks) it is closed."""

    def __init__(self, path: str, count: int, delay: float, size: int) -> None:
        self.path = path
        self.count = count
        self.delay = delay
        self.size = size
        self.yielded = 0

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.count):
            if index:
                time.sleep(self.delay)
            self.yielded += 1
            yield b"x" * (self.size - 1) + b"\n"

    def close(self) -> None:
        _append(self.path, f"{time.time():.6f} {self.yielded}")


def close_app(environ: Environ, start_response: StartResponse) -> ClosingBody:
    """``/close``: an iterable whose ``close()`` is recorded in the file ``path``."""
    query = _query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingBody(
        query["path"],
        int(query.get("n", "3")),
        float(query.get("delay", "0")),
        int(query.get("size", "1024")),
    )


def write_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/write``: two pieces through ``write()``, one returned."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one,")
    write(b"two,")
    return [b"three"]


class RecordingFile:
    """A read-only file whose ``close()`` is recorded (no finalizer: GC does not count)."""

    def __init__(self, path: str, record: str | None) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 -- closed by the server through close()
        self._record = record

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def close(self) -> None:
        if not self._file.closed and self._record:
            _append(self._record, "closed")
        self._file.close()


def file_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``/file``: the file ``file`` through ``wsgi.file_wrapper`` (500 if there is none)."""
    query = _query(environ)
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"no wsgi.file_wrapper in the environ"]
    size = os.path.getsize(query["file"])
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    )
    result: Iterable[bytes] = wrapper(RecordingFile(query["file"], query.get("close")), 8192)
    return result


def raise_app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """``/raise``: an exception before ``start_response``, after it, or after body bytes."""
    when = _query(environ).get("when", "before")
    if when == "before":
        raise RuntimeError("conformance: before start_response")
    headers = [("Content-Type", "text/plain")]
    if when == "after-body-cl":
        headers.append(("Content-Length", "1000"))
    start_response("200 OK", headers)
    if when == "after-start":
        raise RuntimeError("conformance: after start_response")
    return _raise_after_body()


def _raise_after_body() -> Iterator[bytes]:
    yield b"first part of the body\n"
    raise RuntimeError("conformance: after body bytes")


def cookie_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/cookie``: Set-Cookie values built as Django's WSGI handler builds them."""
    cookies: SimpleCookie = SimpleCookie()
    cookies["sessionid"] = "abc123"
    cookies["sessionid"]["path"] = "/"
    cookies["sessionid"]["httponly"] = True
    cookies["csrftoken"] = "tok"
    cookies["csrftoken"]["samesite"] = "Lax"
    headers = [("Content-Type", "text/plain"), ("Content-Length", "6")]
    # django.core.handlers.wsgi: c.output(header="") starts with a space
    headers += [("Set-Cookie", morsel.output(header="")) for morsel in cookies.values()]
    start_response("200 OK", headers)
    return [b"cookie"]


def content_type_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/content-type``: a response with two Content-Type headers."""
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Type", "text/html"), ("Content-Length", "3")],
    )
    return [b"dup"]


def head_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``/head``: a 100-byte body for every method (the server must drop it for HEAD)."""
    if _query(environ).get("stream"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"h" * 50, b"h" * 50])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    return [b"h" * 100]


def multipart_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/multipart``: the form fields, and each file's name, size and sha256."""
    from werkzeug.formparser import parse_form_data

    _, form, files = parse_form_data(environ)
    uploaded = {}
    for name, storage in files.items():
        data = storage.read()
        uploaded[name] = [storage.filename, len(data), hashlib.sha256(data).hexdigest()]
    return _respond_json(start_response, {"form": dict(form.items()), "files": uploaded})


#: response-side cases: (status, headers, body chunks); what the server makes of each is
#: compared with the reference (injection, invalid names, framing the app got wrong)
RESPONSES: dict[str, tuple[str, list[tuple[str, str]], list[bytes]]] = {
    "plain": ("200 OK", [("Content-Type", "text/plain")], [b"plain"]),
    "header-injection": ("200 OK", [("X-A", "a\r\nX-Injected: 1")], [b"body"]),
    "header-lf-injection": ("200 OK", [("X-A", "a\nX-Injected: 1")], [b"body"]),
    "header-name-space": ("200 OK", [("X A", "b")], [b"body"]),
    "header-name-colon": ("200 OK", [("X-A:", "b")], [b"body"]),
    "header-value-ctl": ("200 OK", [("X-A", "a\x01b")], [b"body"]),
    "header-non-latin1": ("200 OK", [("X-A", "\u2603")], [b"body"]),
    "header-latin1": ("200 OK", [("X-A", "caf\xe9")], [b"body"]),
    "header-trailing-space": ("200 OK", [("X-A", "b  ")], [b"body"]),
    "header-empty-value": ("200 OK", [("X-A", "")], [b"body"]),
    "app-server-header": ("200 OK", [("Server", "app/1.0")], [b"body"]),
    "app-date-header": ("200 OK", [("Date", "Mon, 01 Jan 2001 00:00:00 GMT")], [b"body"]),
    "status-no-reason": ("200", [], [b"body"]),
    "status-custom-reason": ("299 Very Fine", [], [b"body"]),
    "status-not-a-number": ("abc OK", [], [b"body"]),
    "status-four-digits": ("2000 OK", [], [b"body"]),
    "content-length-short": ("200 OK", [("Content-Length", "100")], [b"only ten b"]),
    "content-length-long": ("200 OK", [("Content-Length", "5")], [b"more than five"]),
    "content-length-invalid": ("200 OK", [("Content-Length", "abc")], [b"body"]),
    "content-length-twice": (
        "200 OK",
        [("Content-Length", "4"), ("Content-Length", "4")],
        [b"body"],
    ),
    "app-transfer-encoding": ("200 OK", [("Transfer-Encoding", "chunked")], [b"body"]),
    "app-connection-close": ("200 OK", [("Connection", "close")], [b"body"]),
    "app-connection-keepalive": ("200 OK", [("Connection", "keep-alive")], [b"body"]),
    "empty-chunks": ("200 OK", [], [b"a", b"", b"b", b"", b"", b"c"]),
    "only-empty-chunks": ("200 OK", [], [b"", b""]),
    "no-body": ("200 OK", [], []),
    "204-with-body": ("204 No Content", [], [b"nope"]),
    "304-with-body": ("304 Not Modified", [], [b"nope"]),
    "205-with-body": ("205 Reset Content", [], [b"nope"]),
    "500-from-app": ("500 Internal Server Error", [], [b"app error page"]),
}


def respond_app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """``/respond?case=NAME``: the response :data:`RESPONSES` names, exactly as given."""
    status, headers, chunks = RESPONSES[_query(environ)["case"]]
    start_response(status, list(headers))
    yield from chunks


def input_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/input?mode=``: ``wsgi.input`` read as apps read it; what each call returned."""
    stream = environ["wsgi.input"]
    mode = _query(environ).get("mode", "read")
    calls: list[str] = []
    if mode == "read":  # read() without a size: the whole body, then b""
        calls = [stream.read().decode("latin-1"), stream.read().decode("latin-1")]
    elif mode == "read-big":  # a size beyond the body: what there is, without blocking
        calls = [stream.read(1 << 20).decode("latin-1"), stream.read(10).decode("latin-1")]
    elif mode == "read-minus-one":
        calls = [stream.read(-1).decode("latin-1")]
    elif mode == "readline":
        while True:
            line = stream.readline()
            calls.append(line.decode("latin-1"))
            if not line:
                break
    elif mode == "readline-sized":
        calls = [stream.readline(3).decode("latin-1"), stream.readline(100).decode("latin-1")]
    elif mode == "readlines":
        calls = [line.decode("latin-1") for line in stream.readlines()]
    elif mode == "iterate":
        calls = [line.decode("latin-1") for line in stream]
    elif mode == "small-reads":
        while True:
            piece = stream.read(3)
            calls.append(piece.decode("latin-1"))
            if not piece:
                break
    return _respond_json(start_response, {"mode": mode, "calls": calls})


def wsgi_keys_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """``/wsgi``: the wsgi.* flags and the SERVER_* / REMOTE_ADDR values."""
    return _respond_json(
        start_response,
        {
            "version": list(environ.get("wsgi.version", ())),
            "multithread": environ.get("wsgi.multithread"),
            "multiprocess": environ.get("wsgi.multiprocess"),
            "run_once": environ.get("wsgi.run_once"),
            "errors_writable": callable(getattr(environ.get("wsgi.errors"), "write", None)),
            "server_name": environ.get("SERVER_NAME"),
            "server_port": environ.get("SERVER_PORT"),
            "remote_addr": environ.get("REMOTE_ADDR"),
        },
    )


ROUTES: dict[str, App] = {
    "/respond": respond_app,
    "/input": input_app,
    "/wsgi": wsgi_keys_app,
    "/ping": ping_app,
    "/env": env_app,
    "/stream": stream_app,
    "/close": close_app,
    "/write": write_app,
    "/file": file_app,
    "/raise": raise_app,
    "/cookie": cookie_app,
    "/content-type": content_type_app,
    "/head": head_app,
    "/multipart": multipart_app,
}


def _route(path: str) -> App:
    """The route for ``path``: ``/env`` serves ``/env`` and ``/env/...``; the rest echo."""
    first = "/" + path.lstrip("/").split("/", 1)[0]
    return ROUTES.get(first, echo_app) if path.startswith(first) else echo_app


class _Guarded:
    """Iterates a validated response, recording validator complaints while iterating or closing."""

    def __init__(self, inner: Iterable[bytes], errors: str | None) -> None:
        self._inner = inner
        self._iterator = iter(inner)
        self._errors = errors

    def __iter__(self) -> _Guarded:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._iterator)
        except (AssertionError, WSGIWarning) as exc:
            self._record(exc)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        except (AssertionError, WSGIWarning) as exc:
            self._record(exc)
            raise

    def _record(self, exc: BaseException) -> None:
        if self._errors:
            _append(self._errors, f"{type(exc).__name__}: {exc}")


def validated_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``/validate/...``: the route behind ``wsgiref.validate``; complaints are a 500 and recorded."""
    errors = _query(environ).get("errors")
    inner_path = environ.get("PATH_INFO", "")[len("/validate") :] or "/"

    def inner(env: Environ, start: StartResponse) -> Iterable[bytes]:
        return _route(inner_path)(env, start)

    try:
        result = validator(inner)(environ, start_response)
    except (AssertionError, WSGIWarning) as exc:
        message = f"validator: {type(exc).__name__}: {exc}"
        if errors:
            _append(errors, message)
        body = message.encode("utf-8", "replace")
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            sys.exc_info(),
        )
        return [body]
    return _Guarded(result, errors)


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Dispatch on ``PATH_INFO``."""
    path = environ.get("PATH_INFO", "")
    if path == "/validate" or path.startswith("/validate/"):
        return validated_app(environ, start_response)
    return _route(path)(environ, start_response)
