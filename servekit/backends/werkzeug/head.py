"""Reading a request head (RFC 9112) as strictly as gunicorn's sync worker reads it.

http.server accepts what gunicorn refuses (two ``Host`` headers, ``Transfer-Encoding:
gzip``, control bytes, ``HTTP/0.99``, obs-fold...) and refuses nothing by size below
64 KiB. servekit's werkzeug strategies read the head here instead: the same limits
as gunicorn's defaults (``limit_request_line`` 4094, ``limit_request_field_size``
8190, ``limit_request_fields`` 100), the same choices where RFC 9112 leaves one, and
the same status for each refusal.
"""

from __future__ import annotations

import io
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "DEFAULT_TRUSTED",
    "Incomplete",
    "Policy",
    "Refusal",
    "RequestHead",
    "Trust",
    "bad_request",
    "parse_fields",
    "read_field_lines",
    "read_head",
    "trailer_policy",
]

#: gunicorn's default ``forwarded_allow_ips`` (servekit's too)
DEFAULT_TRUSTED = "127.0.0.1,::1"
MAX_REQUEST_LINE = 4094
MAX_FIELD_LINE = 8190
MAX_FIELDS = 100
#: the whole header section (and a trailer section): gunicorn's ``max_buffer_headers``
MAX_SECTION = MAX_FIELDS * (MAX_FIELD_LINE + 2) + 4

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: a token without lower case letters and ``#``, 3 to 20 long: every registered method
_METHOD = re.compile(r"[!$%&'*+\-.^_`|~0-9A-Z]{3,20}")
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
#: a request-target is printable ASCII (RFC 3986 section 2); the rest is percent-encoded
_TARGET = re.compile(r"[\x21-\x7e]+")
#: field values: VCHAR, obs-text, SP and HTAB only (RFC 9110 section 5.5)
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: fields a trailer section must not carry: they route, frame or authenticate
_NOT_IN_TRAILERS = frozenset(
    ("HOST", "CONTENT-LENGTH", "TRANSFER-ENCODING", "TRAILER", "AUTHORIZATION", "TE")
)
#: fields with a single value: a second one makes the request ambiguous
_SINGLETONS = frozenset(("HOST", "CONTENT-TYPE"))
#: what a trusted proxy sends for an https request (gunicorn's ``secure_scheme_headers``)
_SECURE_SCHEME = {
    "X-FORWARDED-PROTOCOL": "ssl",
    "X-FORWARDED-PROTO": "https",
    "X-FORWARDED-SSL": "on",
}
#: underscored names a trusted proxy may set (gunicorn's ``forwarder_headers``)
_FORWARDER_FIELDS = frozenset(("SCRIPT_NAME", "PATH_INFO"))
_CODINGS = frozenset(("compress", "deflate", "gzip"))

#: a field policy: refuses a field (raises :class:`Refusal`), keeps it or drops it
Policy = Callable[[str, str], bool]


class Refusal(Exception):
    """A request servekit refuses: the client gets ``status``, then the connection closes."""

    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(f"{status.value} {status.phrase}: {detail}")
        self.status = status
        self.detail = detail


class Incomplete(ConnectionError):
    """The client closed the connection in the middle of a request: nothing to answer."""


def bad_request(detail: str) -> Refusal:
    """A 400 refusal."""
    return Refusal(HTTPStatus.BAD_REQUEST, detail)


class Trust:
    """Which peers may set the forwarding headers: gunicorn's ``forwarded_allow_ips``.

    A unix socket peer is always trusted, as by gunicorn.
    """

    def __init__(self, allowed: str = DEFAULT_TRUSTED) -> None:
        items = [part.strip() for part in allowed.split(",") if part.strip()]
        self.everyone = "*" in items
        self.networks = [ipaddress.ip_network(i, strict=False) for i in items if i != "*"]

    def trusts(self, peer: object) -> bool:
        """Whether ``peer`` (a socket address) may act as a proxy."""
        if self.everyone or not isinstance(peer, tuple):
            return True
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass
class RequestHead:
    """A request line and header section that passed every check."""

    method: str
    target: str
    version: tuple[int, int]
    parts: SplitResult
    #: (name as sent, value without surrounding blanks), in order, underscored names dropped
    fields: list[tuple[str, str]] = field(default_factory=list)
    expect_continue: bool = False
    #: ``https``/``http`` from a trusted proxy's scheme header, else ``None``
    scheme: str | None = None
    #: the body's length, or ``None`` for a chunked body
    length: int | None = 0

    @property
    def protocol(self) -> str:
        """``SERVER_PROTOCOL``: the version the client sent."""
        return "HTTP/{}.{}".format(*self.version)


def read_head(rfile: io.BufferedIOBase, trusted: bool) -> RequestHead | None:
    """Read and check one request head; ``None`` when the client closed before a request.

    Raises:
        Refusal: the head is malformed or over a limit.
        Incomplete: the client closed the connection in the middle of the head.
    """
    line = rfile.readline(MAX_REQUEST_LINE + 3)
    if line == b"\r\n":  # RFC 9112 section 2.2: one empty line may precede a request
        line = rfile.readline(MAX_REQUEST_LINE + 3)
    if not line:
        return None
    if not line.endswith(b"\n"):
        if len(line) > MAX_REQUEST_LINE + 2:
            raise Refusal(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
        raise Incomplete
    if not line.endswith(b"\r\n"):
        raise bad_request("bare LF as line terminator")
    if len(line) - 2 > MAX_REQUEST_LINE:
        raise Refusal(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    head = _request_line(line[:-2].decode("latin-1"))
    _fill(head, read_field_lines(rfile), trusted)
    head.length = _framing(head)
    return head


def _request_line(line: str) -> RequestHead:
    parts = line.split(" ", 2)
    if len(parts) != 3:
        raise bad_request(f"invalid request line {line!r}")
    method, target, version = parts
    if not _METHOD.fullmatch(method):
        raise bad_request(f"invalid method {method!r}")
    if not _TARGET.fullmatch(target):
        raise bad_request(f"invalid request target {target!r}")
    # RFC 9112 section 3.2: "*" only for OPTIONS, authority-form only for CONNECT
    if target == "*" and method != "OPTIONS":
        raise bad_request(f"asterisk-form target with {method}")
    if method != "CONNECT" and target != "*" and not target.startswith("/") and "://" not in target:
        raise bad_request(f"invalid request target {target!r}")
    try:
        split = _split_target(target)
    except ValueError:
        raise bad_request(f"invalid request target {target!r}") from None
    match = _VERSION.fullmatch(version)
    if match is None:
        raise bad_request(f"invalid HTTP version {version!r}")
    number = (int(match.group(1)), int(match.group(2)))
    if not (1, 0) <= number < (2, 0):
        raise bad_request(f"unsupported HTTP version {version!r}")
    return RequestHead(method, target, number, split)


def _split_target(target: str) -> SplitResult:
    if target.startswith("//"):  # an origin-form path, not a network location
        parts = urlsplit("." + target)
        return parts._replace(path=parts.path[1:])
    return urlsplit(target)


def read_field_lines(rfile: io.BufferedIOBase) -> list[bytes]:
    """Read a header (or trailer) section up to its empty line; its lines without CRLF.

    Raises:
        Refusal: a bare LF, or a section over gunicorn's size limit.
        Incomplete: the client closed the connection before the empty line.
    """
    lines: list[bytes] = []
    budget = MAX_SECTION
    while True:
        line = rfile.readline(budget + 1)
        if not line.endswith(b"\n"):
            if len(line) > budget:
                raise Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header section")
            raise Incomplete
        if not line.endswith(b"\r\n"):
            raise bad_request("bare LF as line terminator")
        if line == b"\r\n":
            return lines
        budget -= len(line)
        lines.append(line[:-2])


def parse_fields(lines: list[bytes], keep: Policy) -> list[tuple[str, str]]:
    """Check field lines in order (RFC 9110 section 5, RFC 9112 section 5); the fields kept.

    ``keep(name, value)`` applies the field policy: it may refuse a field, or drop it
    (return ``False``); at most :data:`MAX_FIELDS` fields are kept.

    Raises:
        Refusal: a malformed field, obs-fold, a refused field, or over a limit.
    """
    fields: list[tuple[str, str]] = []
    for index, raw in enumerate(lines):
        if len(fields) >= MAX_FIELDS:
            raise Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields")
        line = raw.decode("latin-1")
        name, colon, value = line.partition(":")
        if not colon or not name:
            raise bad_request(f"invalid header line {line!r}")
        if not _TOKEN.fullmatch(name):
            raise bad_request(f"invalid header name {name!r}")
        if lines[index + 1 : index + 2] and lines[index + 1][:1] in (b" ", b"\t"):
            raise bad_request(f"obsolete line folding in {name}")
        value = value.strip(" \t")
        if _BAD_VALUE.search(value):
            raise bad_request(f"control character in {name}")
        if len(raw) + 2 > MAX_FIELD_LINE:
            raise Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"{name} too long")
        if keep(name, value):
            fields.append((name, value))
    return fields


def trailer_policy() -> Policy:
    """The field policy of a trailer section: no framing, routing or credentials."""
    seen: set[str] = set()

    def keep(name: str, value: str) -> bool:
        upper = name.upper()
        if upper in _NOT_IN_TRAILERS:
            raise bad_request(f"{name} in trailers")
        _once(upper, seen)
        return "_" not in name

    return keep


def _once(upper: str, seen: set[str]) -> None:
    if upper in _SINGLETONS:
        if upper in seen:
            raise bad_request(f"more than one {upper.title()}")
        seen.add(upper)


def _fill(head: RequestHead, lines: list[bytes], trusted: bool) -> None:
    """Apply the header policy: singletons, Expect, a proxy's scheme, underscored names."""
    seen: set[str] = set()

    def keep(name: str, value: str) -> bool:
        upper = name.upper()
        _once(upper, seen)
        if upper == "EXPECT":
            if value.lower() != "100-continue":
                raise Refusal(HTTPStatus.EXPECTATION_FAILED, f"cannot meet {value!r}")
            # RFC 9110 section 10.1.1: an HTTP/1.0 request's expectation is ignored
            head.expect_continue = head.version >= (1, 1)
        if trusted and upper in _SECURE_SCHEME:
            scheme = "https" if value == _SECURE_SCHEME[upper] else "http"
            if head.scheme not in (None, scheme):
                raise bad_request("contradictory scheme headers")
            head.scheme = scheme
        # X_Forwarded_For would share HTTP_X_FORWARDED_FOR with X-Forwarded-For: a client
        # could slip one past a proxy that strips only the other, so it is dropped
        return "_" not in name or (trusted and upper in _FORWARDER_FIELDS)

    head.fields = parse_fields(lines, keep)


def _framing(head: RequestHead) -> int | None:
    """The body's length from Content-Length/Transfer-Encoding (RFC 9112 section 6)."""
    length: str | None = None
    chunked = coded = False
    for name, value in head.fields:
        upper = name.upper()
        if upper == "CONTENT-LENGTH":
            if length is not None:
                raise bad_request("more than one Content-Length")
            length = value
        elif upper == "TRANSFER-ENCODING":
            coded = True
            for coding in (c.strip(" \t").lower() for c in value.split(",")):
                if coding == "chunked" or coding == "identity" or coding in _CODINGS:
                    if chunked:  # chunked must be the last coding, and only once
                        raise bad_request(f"invalid Transfer-Encoding {value!r}")
                    chunked = coding == "chunked"
                else:
                    raise Refusal(HTTPStatus.NOT_IMPLEMENTED, f"transfer coding {coding!r}")
    if coded and not chunked:
        raise bad_request("Transfer-Encoding does not end with chunked")
    if chunked:
        if head.version < (1, 1):
            raise bad_request("chunked HTTP/1.0 request")
        if length is not None:
            raise bad_request("both Content-Length and Transfer-Encoding")
        return None
    if length is None:
        return 0
    if not length.isdigit() or not length.isascii():
        raise bad_request(f"invalid Content-Length {length!r}")
    return int(length)
