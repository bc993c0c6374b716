"""Request heads read on the gthread worker's poller: a connection and its head so far.

:class:`HeadConn` is gunicorn's gthread connection plus the bytes of the next request
head read without a thread. :meth:`HeadConn.add` decides, looking only at the new bytes,
when the head goes to gunicorn's parser: once it is complete, or as soon as the parser
would refuse it (line endings other than CRLF, an invalid request line, a line over the
limits, 64 KiB in all), so a refusal comes as soon as on bare gunicorn.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from gunicorn.workers.gthread import TConn

__all__ = ["HeadConn"]

#: a head that grows past this many bytes goes to the parser whole or not (it refuses it)
_HEAD_MAX = 65536
#: a request line gunicorn's parser may take: the others are refused as soon as it is read
_REQUEST_LINE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \x00-\x20\x7f]+ HTTP/[0-9]\.[0-9]"
).fullmatch


class HeadConn(TConn):  # type: ignore[misc]
    """gunicorn's connection, plus the head bytes read on the poller before the parser."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        #: bytes of the next request read on the poller, given to the parser first
        self.head = bytearray()
        #: how much of ``head`` was looked at; where its current line starts
        self._scanned = 0
        self._line_start = 0
        self._line_checked = False
        self._line_limit = int(cfg.limit_request_line) or 8190
        self._field_limit = int(cfg.limit_request_field_size) or 8190
        #: when the connection started waiting for its head
        self.since = time.monotonic()
        #: when the wait for the head (or for the client's close) ends
        self.expires = 0.0
        #: whether it waits for a second or later request
        self.kept = False
        #: the worker's closer for a graceful close on its poller (None: gunicorn's own)
        self.closer: Callable[[HeadConn], None] | None = None

    def restart(self, now: float, expires: float) -> None:
        """Wait for the next request head from ``now`` (a kept-alive connection)."""
        self.head.clear()
        self._scanned = self._line_start = 0
        self._line_checked = False
        self.kept, self.since, self.expires = True, now, expires

    def add(self, data: bytes) -> bool:
        """Append ``data``; whether the head should now go to gunicorn's parser."""
        head = self.head
        head += data
        low = max(0, self._scanned - 3)  # a line end split over two reads
        self._scanned = len(head)
        if head.find(b"\n\r\n", low) >= 0 or head.find(b"\n\n", low) >= 0:
            return True
        if len(head) >= _HEAD_MAX:
            return True
        segment = bytes(head[max(0, low - 1) :]).replace(b"\r\n", b"")
        if b"\n" in segment or b"\r" in segment[:-1]:
            return True  # a bare LF or CR: the parser refuses it
        last = head.rfind(b"\n", low)
        if last >= 0:
            self._line_start = last + 1
            if not self._line_checked:
                self._line_checked = True
                start = 2 if head.startswith(b"\r\n") else 0  # one empty line is allowed
                end = head.find(b"\r\n", start)
                if end >= 0 and _REQUEST_LINE(bytes(head[start:end])) is None:
                    return True
        limit = self._field_limit if self._line_checked else self._line_limit
        return len(head) - self._line_start > limit + 2  # a line over the limit

    def init(self) -> None:
        super().init()
        if self.head:
            self.parser.unreader.unread(bytes(self.head))
            self.head.clear()

    def close(self, graceful: bool = False) -> None:
        """gunicorn's close; a graceful one waits for the client on the worker's poller."""
        if graceful and self.closer is not None:
            self.closer(self)
        else:
            super().close(graceful)
