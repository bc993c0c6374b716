"""The byte streams of a request under granian: ``wsgi.input``, ``wsgi.file_wrapper``, the body.

granian's own ``wsgi.input`` (2.8) raises on ``read(-1)``, ignores ``readline``'s size and
drops the line ends in ``readlines()``; :class:`Input` reads it the way gunicorn's body
reader behaves. :class:`Body` is what servekit hands to granian's ``response_iter``: the
bytes given to ``write()`` first, then the app's iterable, no empty chunks, never more
than the ``Content-Length`` the app declared, and the iterable's ``close()`` called once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["EMPTY_INPUT", "Body", "BodyTooLarge", "FileWrapper", "Input"]

#: how much is asked of granian at a time when reading to the end of the body
_BLOCK = 65536
#: seconds to wait, after the app raised mid-body, before granian aborts the connection
_FLUSH_GRACE = 0.05


class BodyTooLarge(Exception):
    """A chunked request body grew past ``max_body_size`` (answered 413 if nothing was sent)."""


class Input:
    """``wsgi.input``: ``read()``, ``read(n)``, ``readline(n)``, ``readlines(hint)``, iteration.

    With ``limit`` (a chunked body and ``max_body_size``) a read past ``limit`` bytes in all
    raises :class:`BodyTooLarge`.
    """

    __slots__ = ("_body", "_buffer", "_done", "_left", "too_large")

    def __init__(self, body: Any, limit: int = 0) -> None:
        self._body = body
        self._buffer = bytearray()
        self._done = False
        #: bytes the body may still bring (None: no limit)
        self._left = limit or None
        #: the error once a read went past the limit (the app may have caught it)
        self.too_large: BodyTooLarge | None = None

    @property
    def limited(self) -> bool:
        """Whether reads are counted against ``max_body_size``."""
        return self._left is not None

    def _more(self, size: int, line: bool = False) -> bool:
        """Append more of the body to the buffer; False once it has ended.

        Raises:
            BodyTooLarge: the body went past its limit.
        """
        if self._done:
            return False
        data = self._body.readline() if line else self._body.read(size)
        if not data:
            self._done = True
            return False
        if self._left is not None:
            self._left -= len(data)
            if self._left < 0:
                self._done = True
                self.too_large = BodyTooLarge("chunked request body over max_body_size")
                raise self.too_large
        self._buffer += data
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes (all that is left when ``size`` is ``None`` or negative)."""
        if size is not None and not isinstance(size, int):
            msg = "size must be an integral type"
            raise TypeError(msg)
        if size is None or size < 0:
            while self._more(_BLOCK):
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._more(size - len(self._buffer)):
            pass
        return self._take(size)

    def readline(self, size: int | None = None) -> bytes:
        """One line with its ``\\n`` (at most ``size`` bytes when ``size`` is given)."""
        if size is not None and not isinstance(size, int):
            msg = "size must be an integral type"
            raise TypeError(msg)
        limit = None if size is None or size < 0 else size
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit is None or end < limit):
                return self._take(end + 1)
            if limit is not None and len(self._buffer) >= limit:
                return self._take(limit)
            if not self._more(_BLOCK, line=True):
                return self._take(len(self._buffer) if limit is None else limit)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        """The remaining lines (stopping once ``hint`` bytes are read, if given)."""
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _EmptyInput(Input):
    """The body of a request that has none (no Content-Length, no Transfer-Encoding):
    one shared, stateless instance."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None)
        self._done = True

    def _more(self, size: int, line: bool = False) -> bool:
        return False


EMPTY_INPUT = _EmptyInput()


class FileWrapper:
    """``wsgi.file_wrapper``: a file read in blocks, closed with the response (PEP 3333)."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        # A block per round trip to granian's writer: at least 64 KiB, as sendfile would.
        self.blksize = max(int(blksize), _BLOCK)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self) -> None:
        """Close the file (when it can be closed)."""
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class Body:
    """The response body as granian pulls it: ``__next__`` until ``StopIteration``, ``close()``."""

    __slots__ = ("_closed", "_iterable", "_iterator", "_left", "_pending", "sent")

    def __init__(
        self,
        pending: list[bytes],
        iterator: Iterator[bytes],
        iterable: Iterable[bytes],
        length: int | None,
    ) -> None:
        self._pending = pending
        self._iterator = iterator
        self._iterable = iterable  # whose close() ends the response
        self._left = length
        self._closed = False
        #: body bytes handed to granian so far
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while True:
            if self._pending:
                chunk = self._pending.pop(0)
            else:
                try:
                    chunk = next(self._iterator)
                except StopIteration:
                    raise
                except Exception:
                    if self.sent:
                        # granian aborts the connection at once; hyper may not have written
                        # the bytes it holds yet. A short wait lets it flush them first,
                        # so the client sees the response cut short, as gunicorn sends it.
                        time.sleep(_FLUSH_GRACE)
                    raise
            if not isinstance(chunk, bytes):
                msg = f"the response iterable gave {type(chunk).__name__}, not bytes"
                raise TypeError(msg)
            if chunk:
                break
        left = self._left
        if left is not None:
            if left <= 0:
                raise StopIteration  # Content-Length reached: the rest is not sent
            if len(chunk) > left:
                chunk = chunk[:left]
            self._left = left - len(chunk)
        self.sent += len(chunk)
        return chunk

    def close(self) -> None:
        """Close the app's iterable, once."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self._iterable, "close", None)
        if close is not None:
            close()
