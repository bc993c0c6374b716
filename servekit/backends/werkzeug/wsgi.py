"""One WSGI exchange for servekit's werkzeug handler: the environ, the app, the response.

werkzeug's ``run_wsgi`` sends a body to ``HEAD``, an ``int`` ``REMOTE_PORT``, the raw
socket as ``wsgi.input`` and whatever header the app sets. This module builds the
environ from a checked :class:`~.head.RequestHead` and frames the response as
gunicorn's sync worker does: no body for ``HEAD``/1xx/204/304, at most
Content-Length bytes, chunked without one (HTTP/1.1), invalid headers a 500,
hop-by-hop headers dropped, and ``Connection: close`` always.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes
from wsgiref.util import FileWrapper

from servekit.backends.werkzeug.head import Refusal, RequestHead

if TYPE_CHECKING:
    import io

__all__ = ["Response", "error_response", "make_environ"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*")
_STATUS = re.compile(r"[0-9]{3}(?: [ \t\x21-\x7e\x80-\xff]*)?")
#: the server's own or per-connection headers, never taken from the app
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te"}
_HOP_BY_HOP |= {"trailers", "transfer-encoding", "upgrade", "server", "date"}


def make_environ(
    head: RequestHead,
    body: io.BufferedReader,
    server: tuple[str, str] | None,
    peer: object,
    secure: bool,
) -> dict[str, Any]:
    """The WSGI environ (PEP 3333, as gunicorn fills it) for a checked request.

    ``server`` is the listener's (host, port), ``None`` on a unix socket.

    Raises:
        Refusal: a trusted proxy's ``SCRIPT_NAME`` is not a prefix of the path (500).
    """
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": head.scheme or ("https" if secure else "http"),
        "wsgi.input": body,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "REQUEST_METHOD": head.method,
        "QUERY_STRING": head.parts.query,
        "RAW_URI": head.target,
        "REQUEST_URI": head.target,
        "SERVER_PROTOCOL": head.protocol,
    }
    host, script_name = _add_fields(environ, head.fields)
    if isinstance(peer, tuple):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(peer[0]), str(peer[1])
    else:
        environ["REMOTE_ADDR"] = str(peer or "")
    environ["SERVER_NAME"], environ["SERVER_PORT"] = server or _from_host(host, secure)
    path = head.parts.path
    if script_name:
        if not path.startswith(script_name):
            detail = f"request path {path!r} does not start with SCRIPT_NAME {script_name!r}"
            raise Refusal(HTTPStatus.INTERNAL_SERVER_ERROR, detail)
        path = path[len(script_name) :]
    environ["SCRIPT_NAME"] = script_name
    environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
    return environ


def _add_fields(environ: dict[str, Any], fields: list[tuple[str, str]]) -> tuple[str, str]:
    """``HTTP_*``, ``CONTENT_TYPE`` and ``CONTENT_LENGTH``; repeated fields joined by commas."""
    host = script_name = ""
    for name, value in fields:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
            continue
        if key == "HOST":
            host = value
        elif key == "SCRIPT_NAME":  # only kept from a trusted proxy
            script_name = value
        key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return host, script_name


def _from_host(host: str, secure: bool) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT on a unix socket: from the Host header."""
    if not host:
        return "", ""
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:  # no port, or the end of a bracketed IPv6 address
        return host, "443" if secure else "80"
    return name, port


class Response:
    """The response side of one exchange, written to ``wfile`` as the app produces it."""

    def __init__(self, wfile: io.BufferedIOBase, head: RequestHead, server_name: str) -> None:
        self._wfile = wfile
        self._head = head
        self._server_name = server_name
        self.status: str | None = None
        self.code = 0
        self.headers_sent = False
        self._headers: list[tuple[str, str]] = []
        self._length: int | None = None
        self._sent = 0
        self._chunked = False
        self._no_body = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        """PEP 3333's ``start_response``; invalid statuses and headers raise (a 500)."""
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if not isinstance(status, str) or not _STATUS.fullmatch(status):
            raise ValueError(f"invalid status {status!r}")
        self._headers, self._length = _response_headers(headers)
        self.status, self.code = status, int(status[:3])
        self._no_body = self._head.method == "HEAD" or self.code in (204, 304) or self.code < 200
        if self.code == 204 or self.code < 200:  # RFC 9110 8.6: no Content-Length on them
            self._headers = [(k, v) for k, v in self._headers if k.lower() != "content-length"]
            self._length = None
        self._chunked = self._length is None and not self._no_body and self._head.version > (1, 0)
        return self.write

    def write(self, data: bytes) -> None:
        """Send ``data`` (the head first, once); never more than Content-Length."""
        if not isinstance(data, bytes):
            raise TypeError(f"{type(data).__name__} is not bytes")
        self._send_head()
        if self._no_body or not data:
            return
        if self._length is not None:
            data = data[: max(0, self._length - self._sent)]
            if not data:
                return
        self._sent += len(data)
        if self._chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        self._wfile.write(data)

    def finish(self) -> None:
        """End the response: the head if nothing was written, and the last chunk."""
        self._send_head()
        if self._chunked:
            self._wfile.write(b"0\r\n\r\n")

    def _send_head(self) -> None:
        if self.headers_sent:
            return
        if self.status is None:
            raise AssertionError("the app wrote before calling start_response()")
        lines = [
            f"{self._head.protocol} {self.status}",
            f"Server: {self._server_name}",
            f"Date: {formatdate(usegmt=True)}",
            "Connection: close",
        ]
        if self._chunked:
            lines.append("Transfer-Encoding: chunked")
        lines += [f"{name}: {value}" for name, value in self._headers]
        self._wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.headers_sent = True


def _response_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[list[tuple[str, str]], int | None]:
    """The app's headers checked (RFC 9110 5.5), stripped and without hop-by-hop ones."""
    kept: list[tuple[str, str]] = []
    length: int | None = None
    for name, value in headers:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid response header name {name!r}")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise ValueError(f"invalid value for response header {name!r}")
        value = value.strip(" \t")
        lower = name.lower()
        if lower == "content-length":
            length = int(value)
        elif lower in _HOP_BY_HOP:
            continue
        kept.append((name, value))
    return kept, length


def error_response(refusal: Refusal, server_name: str) -> bytes:
    """The whole response to a refused request (or a failed app), as gunicorn words it.

    Like gunicorn's, it carries its HTML body even for ``HEAD``: a client that reads
    it as a GET response must not wait for bytes that never come.
    """
    phrase = refusal.status.phrase
    page = (
        f"<html>\n  <head>\n    <title>{phrase}</title>\n  </head>\n  <body>\n"
        f"    <h1><p>{phrase}</p></h1>\n    {html.escape(refusal.detail)}\n  </body>\n</html>\n"
    ).encode("latin-1", "replace")
    head = (
        f"HTTP/1.1 {refusal.status.value} {phrase}\r\nServer: {server_name}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nConnection: close\r\n"
        f"Content-Type: text/html\r\nContent-Length: {len(page)}\r\n\r\n"
    )
    return head.encode("latin-1") + page
