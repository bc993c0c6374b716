"""Request bodies as ``wsgi.input``: a length-bounded one, and a strict chunked one.

werkzeug hands the app the raw socket file (an app that reads to the end waits for
the client to close, and reads any pipelined request) and de-chunks with ``int(line,
16)``, which takes ``+5``, ``1_0`` and `` 5 ``, and fails on chunk extensions and
trailers. Both readers here stop at the end of the body, as gunicorn's do, so
``wsgi.input_terminated`` is true.
"""

from __future__ import annotations

import io
import re
from http import HTTPStatus

from servekit.backends.werkzeug.head import (
    MAX_FIELD_LINE,
    Incomplete,
    Refusal,
    bad_request,
    parse_fields,
    read_field_lines,
    trailer_policy,
)

__all__ = ["BodyTooLarge", "ChunkedBody", "LengthBody", "open_body"]

_HEX = re.compile(rb"[0-9A-Fa-f]+")
#: what gunicorn reads from the socket at a time
_READ_SIZE = 8192
# RFC 9112 section 7.1.1, with token and quoted-string from RFC 9110 section 5.6:
#   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
_EXT_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_EXT_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXTENSIONS = re.compile(
    rb"(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*" % (_EXT_TOKEN, _EXT_TOKEN, _EXT_QUOTED)
)


class BodyTooLarge(Refusal):
    """A request body over ``max_body_size``: answered ``413`` (a cut once the response began)."""

    def __init__(self, detail: str) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, detail)


class LengthBody(io.RawIOBase):
    """The ``length`` bytes of a body with a Content-Length (fewer if the client hangs up)."""

    def __init__(self, rfile: io.BufferedIOBase, length: int) -> None:
        self._rfile = rfile
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0 or not len(buffer):
            return 0
        data = self._rfile.read1(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


class ChunkedBody(io.RawIOBase):
    """A chunked body (RFC 9112 section 7.1), checked as gunicorn checks it.

    A malformed chunk-size line, chunk end or trailer raises :class:`~.head.Refusal`
    from ``read()``: escaping the app, it becomes the 400 gunicorn answers. A client
    that closes in the middle of a chunk raises :class:`~.head.Incomplete`. With a
    ``limit`` (``max_body_size``), a read that takes the body past it raises
    :class:`BodyTooLarge`.
    """

    def __init__(self, rfile: io.BufferedIOBase, limit: int = 0) -> None:
        self._rfile = rfile
        self._limit = limit
        self._read = 0
        self._left = 0
        self._started = False
        self._done = False
        self.trailers: list[tuple[str, str]] = []
        #: the refusal once a read went past the limit (the app may have caught it)
        self.too_large: BodyTooLarge | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._left:
            if self._done or not len(buffer):
                return 0
            self._next_chunk()
        data = self._rfile.read1(min(len(buffer), self._left))
        if not data:
            raise Incomplete
        self._left -= len(data)
        if self._limit:
            self._read += len(data)
            if self._read > self._limit:
                self.too_large = BodyTooLarge(f"chunked request body over {self._limit} bytes")
                raise self.too_large
        buffer[: len(data)] = data
        return len(data)

    def _next_chunk(self) -> None:
        if self._started and self._rfile.read(2) != b"\r\n":
            raise bad_request("chunk data not followed by CRLF")
        self._started = True
        line = self._size_line()
        if b"\n" in line:
            raise bad_request("bare LF in a chunk-size line")
        size, semicolon, extensions = line.partition(b";")
        if semicolon:
            size = size.rstrip(b" \t")  # BWS before the extensions, and only there
        if not _HEX.fullmatch(size):
            raise bad_request(f"invalid chunk size {size!r}")
        if semicolon and not _EXTENSIONS.fullmatch(b";" + extensions):
            raise bad_request("invalid chunk extension")
        self._left = int(size, 16)
        if not self._left:
            self._done = True
            self._read_trailers()

    def _size_line(self) -> bytes:
        """The chunk-size line up to its CRLF (a bare LF does not end it), without the CRLF.

        Like gunicorn, it gives up when more than :data:`MAX_FIELD_LINE` bytes came
        without a CRLF and one more read (gunicorn's 8 KiB) did not bring it either.
        """
        line = b""
        limit = MAX_FIELD_LINE + _READ_SIZE
        while not line.endswith(b"\r\n"):
            piece = self._rfile.readline(limit - len(line))
            line += piece
            if len(line) >= limit and not line.endswith(b"\r\n"):
                raise bad_request("chunk-size line too long")
            if not piece.endswith(b"\n"):
                raise Incomplete
        return line[:-2]

    def _read_trailers(self) -> None:
        try:
            lines = read_field_lines(self._rfile)
        except Incomplete:
            # RFC 9112 section 7.1.2: the last chunk is followed by a trailer section
            # and an empty line; without them the body was cut short
            raise bad_request("chunked body without its final CRLF") from None
        self.trailers = parse_fields(lines, trailer_policy())


def open_body(
    rfile: io.BufferedIOBase, length: int | None, limit: int = 0
) -> tuple[io.BufferedReader, ChunkedBody | None]:
    """``wsgi.input`` for a body of ``length`` bytes (``None``: chunked, refused past
    ``limit`` bytes unless it is 0), and the chunked reader."""
    if length is None:
        chunked = ChunkedBody(rfile, limit)
        return io.BufferedReader(chunked), chunked
    return io.BufferedReader(LengthBody(rfile, length)), None
