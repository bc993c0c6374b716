"""``start_response`` under granian, held to what gunicorn accepts and refuses.

granian (2.8) drops a response header it cannot encode without a word, always sends the
status as given (a four-digit or a missing code included), ignores ``exc_info`` and has
no ``write()``. servekit's :class:`Response` checks the status and every header as
gunicorn does (an app error, so a 500), strips values, drops the hop-by-hop fields
gunicorn drops, and buffers ``write()`` until the app returns.

One difference stays: granian sends header values as UTF-8, so a value with latin-1
characters beyond ASCII (``café``) cannot go out byte for byte; it is refused (500, and
an error event naming the header) rather than sent as other bytes.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HeaderError", "Response", "parse_status"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_VALUE = re.compile(r"[ \t\x21-\x7e]*").fullmatch
_LATIN1_VALUE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*").fullmatch
_STATUS = re.compile(r"([0-9]{3})(?: [ \t\x21-\x7e\x80-\xff]*)?").fullmatch
#: fields gunicorn never passes on from the app (it writes its own Server and Date)
_HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "server",
        "date",
    )
)


class HeaderError(ValueError):
    """A status or header the server will not send (the app's mistake: a 500)."""


#: status lines and header names already checked -> their code / lower-case name
_STATUSES: dict[str, int] = {}
_NAMES: dict[str, str] = {}
_CACHE_LIMIT = 1024


def parse_status(status: Any) -> int:
    """The status code of a WSGI status line such as ``"200 OK"``.

    Raises:
        HeaderError: not a string of three digits, optionally a space and a reason.
    """
    code = _STATUSES.get(status) if isinstance(status, str) else None
    if code is not None:
        return code
    if not isinstance(status, str):
        msg = f"status {status!r} is not a string"
        raise HeaderError(msg)
    match = _STATUS(status)
    if match is None:
        msg = f"invalid status {status!r}"
        raise HeaderError(msg)
    if len(_STATUSES) < _CACHE_LIMIT:
        _STATUSES[status] = int(match.group(1))
    return int(match.group(1))


def _lower_name(name: Any) -> str:
    """The header name in lower case, once it is known to be a token."""
    lower = _NAMES.get(name) if isinstance(name, str) else None
    if lower is not None:
        return lower
    if not isinstance(name, str) or not _TOKEN(name):
        msg = f"invalid header name {name!r}"
        raise HeaderError(msg)
    lower = name.lower()
    if len(_NAMES) < _CACHE_LIMIT:
        _NAMES[name] = lower
    return lower


def _check_value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        msg = f"header {name!r}: value {type(value).__name__} is not a string"
        raise HeaderError(msg)
    if value.isascii() and value.isprintable():  # the common case, checked in C
        return value.strip(" ") if value[:1] == " " or value[-1:] == " " else value
    if not _VALUE(value):
        if _LATIN1_VALUE(value):
            msg = (
                f"header {name!r}: granian sends header values as UTF-8, so a latin-1 value "
                "beyond ASCII cannot be sent as the app meant it; encode it (RFC 8187) or use "
                "another strategy"
            )
        else:
            msg = f"header {name!r}: invalid characters in its value"
        raise HeaderError(msg)
    return value.strip(" \t")


class Response:
    """One request's ``start_response``, ``write()`` and what they were given."""

    __slots__ = ("chunks", "code", "guard", "headers", "length", "started", "status")

    def __init__(self) -> None:
        self.status: str | None = None
        self.code = 500
        self.headers: list[tuple[str, str]] = []
        #: the Content-Length the app declared, if any
        self.length: int | None = None
        #: bytes given to ``write()``, sent before the iterable's
        self.chunks: list[bytes] = []
        #: set once the status and headers have gone to granian
        self.started = False
        #: a chunked wsgi.input counted against max_body_size (see start_response)
        self.guard: Any = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        """PEP 3333's ``start_response``; returns ``write``.

        Raises:
            HeaderError: the status or a header cannot be sent.
            AssertionError: called again without ``exc_info``.
        """
        guard = self.guard
        if guard is not None and guard.too_large is not None:
            raise guard.too_large  # past max_body_size: a 413, even if the app caught it
        if exc_info:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            msg = "start_response() called again without exc_info"
            raise AssertionError(msg)
        code = _STATUSES.get(status) if type(status) is str else None
        if code is None:
            code = parse_status(status)
        kept: list[tuple[str, str]] = []
        length = None
        names = _NAMES
        for pair in headers:
            name, value = pair
            lower = names.get(name) if type(name) is str else None
            if lower is None:
                lower = _lower_name(name)
            if not (
                type(value) is str
                and value.isascii()
                and value.isprintable()
                and value[:1] != " "
                and value[-1:] != " "
            ):
                value = _check_value(name, value)
            if lower == "content-length":
                if not value.isdigit() or not value.isascii():
                    msg = f"invalid Content-Length {value!r}"
                    raise HeaderError(msg)
                length = int(value)
            elif lower in _HOP_BY_HOP:
                continue
            kept.append(pair if type(pair) is tuple and value is pair[1] else (name, value))
        self.code, self.headers, self.length, self.status = code, kept, length, status
        if self.chunks:
            self.chunks = []
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()``: its bytes go out before the iterable's, when the app returns."""
        if self.status is None:
            msg = "write() before start_response()"
            raise AssertionError(msg)
        if not isinstance(data, bytes):
            msg = f"write() takes bytes, not {type(data).__name__}"
            raise TypeError(msg)
        self.chunks.append(data)

    def without_length(self) -> list[tuple[str, str]]:
        """The headers without Content-Length (for 1xx and 204, which must not carry one)."""
        return [(n, v) for n, v in self.headers if n.lower() != "content-length"]
