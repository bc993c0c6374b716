"""Raw HTTP/1.x on a socket: send exact bytes, read exactly what comes back.

Nothing here trusts a client library's leniency: responses are framed by hand
(Content-Length, chunked, or the connection's end), so a server that sends a body
to a HEAD request, a truncated body or a second response shows up as such.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
#: any single socket operation (connect, send, a read while a response is arriving)
TIMEOUT = 10.0
#: no byte this long after a complete request: the server is waiting for more of it
SILENCE = 2.0
#: a connection closed later than this after the request, without a response, was
#: closed by an idle timeout (the server was waiting for more), not as a refusal
QUICK = 1.0
WAITS = "waits for more (no response)"
#: how long a server may take to close a connection it said (or should have said) it closes
CLOSE_WAIT = 1.0


class BadResponse(Exception):
    """What came back is not an HTTP/1.x response."""


@dataclass
class Response:
    """One HTTP response as it came off the wire."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    #: the body's framing was satisfied (Content-Length reached, last chunk read, or EOF
    #: for a close-delimited body); False when the connection ended or stalled early
    complete: bool = True
    #: when the head had fully arrived (``time.monotonic()``)
    arrived: float = field(default=0.0)

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or ``None``."""
        values = self.header_all(name)
        return values[-1] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def closes(self) -> bool:
        """Whether the response says the connection ends after it."""
        tokens = {t.strip().lower() for v in self.header_all("Connection") for t in v.split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


class Connection:
    """A client connection with its own read buffer (so pipelined responses can be split)."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False
        #: ``time.monotonic()`` when each piece of data arrived, with the buffer length after it
        self.arrivals: list[tuple[float, int]] = []
        self._received = 0

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send ``data``; False when the server had already closed or reset the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def fill(self, timeout: float | None = None) -> bool:
        """Read what is there (waiting up to ``timeout``); False at EOF or reset.

        Raises:
            TimeoutError: nothing arrived in time.
        """
        if self.eof:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        except TimeoutError as exc:
            raise TimeoutError("no data") from exc
        if not data:
            self.eof = True
            return False
        self.buffer += data
        self._received += len(data)
        self.arrivals.append((time.monotonic(), self._received))
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _line(self) -> bytes | None:
        """One CRLF-ended line without its ending, or ``None`` at EOF first."""
        while b"\r\n" not in self.buffer:
            if not self.fill():
                return None
        index = self.buffer.index(b"\r\n")
        line = self._take(index)
        self._take(2)
        return line

    def read_response(
        self, method: str = "GET", first_byte_timeout: float | None = None
    ) -> Response | None:
        """The next response (an interim 1xx one too); ``None`` if the connection ended first.

        Raises:
            TimeoutError: no byte arrived within ``first_byte_timeout`` (or the head stalled).
            BadResponse: the bytes are not an HTTP/1.x response head.
        """
        if not self.buffer and not self.fill(first_byte_timeout):
            return None
        while b"\r\n\r\n" not in self.buffer:
            if not self.fill():
                raise BadResponse(
                    f"connection ended inside a response head: {bytes(self.buffer)!r}"
                )
        arrived = time.monotonic()
        head = self._take(self.buffer.index(b"\r\n\r\n"))
        self._take(4)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise BadResponse(f"not a status line: {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise BadResponse(f"not a header line: {line!r}")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        response = Response(
            version=parts[0].decode("latin-1"),
            status=int(parts[1]),
            reason=parts[2].decode("latin-1") if len(parts) > 2 else "",
            headers=headers,
            arrived=arrived,
        )
        if method == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200:
            return response
        try:
            self._read_body(response)
        except TimeoutError:
            response.complete = False
        return response

    def _read_body(self, response: Response) -> None:
        encoding = ",".join(response.header_all("Transfer-Encoding")).lower()
        length = response.header("Content-Length")
        if "chunked" in encoding:
            body = bytearray()
            while True:
                line = self._line()
                if line is None:
                    response.body, response.complete = bytes(body), False
                    return
                try:
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                except ValueError as exc:
                    raise BadResponse(f"invalid chunk size line in the response: {line!r}") from exc
                if size == 0:
                    while True:  # trailers, up to the empty line
                        trailer = self._line()
                        if trailer is None:
                            response.body, response.complete = bytes(body), False
                            return
                        if not trailer:
                            break
                    response.body = bytes(body)
                    return
                while len(self.buffer) < size + 2:
                    if not self.fill():
                        body += self._take(min(size, len(self.buffer)))
                        response.body, response.complete = bytes(body), False
                        return
                body += self._take(size)
                self._take(2)
        elif length is not None:
            if not length.isdigit() or len(set(response.header_all("Content-Length"))) > 1:
                raise BadResponse(f"invalid Content-Length in the response: {response.headers}")
            wanted = int(length)
            while len(self.buffer) < wanted:
                if not self.fill():
                    response.body, response.complete = self._take(len(self.buffer)), False
                    return
            response.body = self._take(wanted)
        else:
            while self.fill():
                pass
            response.body = self._take(len(self.buffer))

    def read_final(
        self, method: str = "GET", first_byte_timeout: float | None = None
    ) -> tuple[list[Response], Response | None]:
        """Interim (1xx) responses, then the final one (``None`` if the connection ended)."""
        interim: list[Response] = []
        while True:
            response = self.read_response(method, first_byte_timeout)
            if response is None or response.status >= 200 or response.status == 101:
                return interim, response
            interim.append(response)

    def closes_within(self, seconds: float = CLOSE_WAIT) -> bool:
        """Whether the server ends the connection within ``seconds`` (sending nothing more)."""
        return self.ending(seconds) == "closed"

    def ending(self, seconds: float = CLOSE_WAIT) -> str:
        """What the connection does in the next ``seconds``: ``closed`` (nothing more came),
        ``kept open``, or ``N more bytes: ...`` (it sent more, then closed or not)."""
        end = time.monotonic() + seconds
        while not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                self.fill(left)
            except TimeoutError:
                break
        if self.buffer:
            return f"{len(self.buffer)} more bytes: {bytes(self.buffer[:60])!r}"
        return "closed" if self.eof else "kept open"


def request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    *,
    host: str | None = "localhost",
    length: bool = True,
) -> bytes:
    """Well-formed request bytes (``Host`` and ``Content-Length`` added unless told not to)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, sizes: tuple[int, ...] = (1, 10, 1000, 65536)) -> bytes:
    """``body`` in chunked transfer coding, the chunk sizes cycling through ``sizes``."""
    out = bytearray()
    position = 0
    index = 0
    while position < len(body):
        size = sizes[index % len(sizes)]
        piece = body[position : position + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        position += len(piece)
        index += 1
    return bytes(out + b"0\r\n\r\n")


def short(text: str | None, limit: int = 40) -> str:
    """``repr(text)``, or for a long text its start, its length and a digest of it all."""
    if text is None or len(text) <= limit:
        return repr(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{text[:20]!r}...[{len(text)} chars, sha256 {digest}]"


def exchange(
    port: int, raw: bytes, method: str = "GET", timeout: float = TIMEOUT
) -> tuple[list[Response], Response | None]:
    """Send ``raw`` on a new connection; return the interim responses and the final one."""
    with Connection(port, timeout) as conn:
        conn.send(raw)
        return conn.read_final(method)


def outcome(port: int, raw: bytes, silence: float = SILENCE) -> str:
    """The outcome class of sending ``raw`` on a new connection, as a comparable string.

    - ``closed without response``: the server ended the connection at once (FIN or reset);
    - ``waits for more (no response)``: nothing came back within :data:`QUICK` seconds:
      the server waits for the rest of the request, until ``silence`` seconds (when the
      client gives up) or its own idle timeout (when it closes: also this class);
    - ``NNN then closed`` / ``NNN then kept open`` / ``NNN then more bytes``: a non-2xx
      response, and whether the server ended the connection within :data:`CLOSE_WAIT`
      seconds after it (or sent more);
    - ``NNN app saw ...``: a 2xx from the default route, with what the app saw of the
      request (method, SCRIPT_NAME|PATH_INFO, QUERY_STRING, the body's length and sha256,
      CONTENT_TYPE and the HTTP_* keys);
    - ``NNN truncated`` / ``garbage ...``: a broken response.
    """
    with Connection(port) as conn:
        sent = time.monotonic()
        conn.send(raw)
        try:
            _, response = conn.read_final(first_byte_timeout=silence)
        except TimeoutError:
            return WAITS
        except BadResponse as exc:
            return f"garbage: {exc}"
        if response is None:
            return WAITS if time.monotonic() - sent >= QUICK else "closed without response"
        if not response.complete:
            return f"{response.status} truncated"
        if 200 <= response.status < 300:
            try:
                seen = response.json()
            except ValueError:
                return f"{response.status} non-JSON body of {len(response.body)} bytes"
            return (
                f"{response.status} app saw {short(seen['method'])} {short(seen['script_name'])}"
                f"|{short(seen['path_info'])} ?{short(seen['query'])} body {seen['length']} "
                f"bytes sha256 {seen['sha256'][:12]}, CONTENT_TYPE {short(seen['content_type'])},"
                f" {short(' '.join(f'{k}={v!r}' for k, v in seen['headers']), 160)}"
            )
        ending = conn.ending()
        return f"{response.status} then {'more bytes' if 'more bytes' in ending else ending}"


def fetch(
    port: int,
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> Response:
    """One request with ``Connection: close`` on a new connection; its final response.

    Raises:
        AssertionError: the connection ended without a response.
    """
    raw = request(method, target, [("Connection", "close"), *(headers or [])], body, version)
    _, response = exchange(port, raw, method)
    assert response is not None, f"{method} {target}: connection closed without a response"
    return response
