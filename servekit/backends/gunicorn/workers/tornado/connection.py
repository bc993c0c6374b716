"""One client connection of the tornado worker: HTTP/1.1 bytes in and out on the event loop.

Request heads and bodies are parsed by gunicorn's own parser (:class:`gunicorn.http.message.Request`
and its body readers), so what this worker accepts and refuses, and with which status, is
what gunicorn's sync worker does with the same bytes. The bytes themselves travel on an
asyncio transport of the loop tornado runs on: unlike tornado's ``IOStream`` it keeps
writing after the client half-closes (``shutdown(SHUT_WR)`` after its request), and it
reports a flushed write, which is what lets a response stream with back-pressure.

The app runs on a pool thread (see :mod:`.container`) and reaches the connection
through the objects of :mod:`.bridge`.
"""

from __future__ import annotations

import asyncio
import errno
import time
from typing import TYPE_CHECKING, Any, cast

from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import MAX_HEADERS, MAX_REQUEST_LINE, Request

from servekit.backends.gunicorn.workers.limits import REPLY_408, Pace, current
from servekit.backends.gunicorn.workers.slots import Away
from servekit.backends.gunicorn.workers.tornado.bridge import BodySource, ClientGone, ClientSocket

if TYPE_CHECKING:
    import ssl

    from servekit.backends.gunicorn.workers.tornado.server import DrainingServer

__all__ = ["Connection"]

#: bytes buffered beyond the largest request head before the transport stops reading
_READ_SLACK = 64 * 1024
_DEFAULT_FIELD_SIZE = 8190
#: returned by :meth:`Connection._parse` while the head has not fully arrived
_INCOMPLETE = object()


def _head_limits(cfg: Any) -> tuple[int, int]:
    """(request line, header block) sizes beyond which gunicorn refuses a head.

    The values follow gunicorn's own reading of ``limit_request_line``,
    ``limit_request_fields`` and ``limit_request_field_size`` (0 or less: its maximum).
    """
    line = int(cfg.limit_request_line)
    if line < 0 or line >= MAX_REQUEST_LINE:
        line = MAX_REQUEST_LINE
    fields = int(cfg.limit_request_fields)
    if fields <= 0 or fields > MAX_HEADERS:
        fields = MAX_HEADERS
    size = int(cfg.limit_request_field_size)
    if size <= 0:
        size = _DEFAULT_FIELD_SIZE
    return line, fields * (size + 2) + 4


class Connection(asyncio.Protocol):
    """An HTTP/1.1 client connection: requests read in turn and handed to the pool.

    Args:
        server: the server that accepted it (limits, the pool, the WSGI container,
            connection tracking).
        peer: the client's address as ``accept()`` gave it.
        server_address: the listener's own address (``SERVER_NAME``/``SERVER_PORT``).
    """

    def __init__(self, server: DrainingServer, peer: Any, server_address: Any) -> None:
        self._server = server
        self._cfg = server.worker.cfg
        self.peer = peer
        self.server_address = server_address
        self.client = ClientSocket(self)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        #: the connection is gone (reset, failed write, or closed by us)
        self.lost = False
        self._readable: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._tls = False
        self._heard = False
        self._line_limit, self._headers_limit = _head_limits(self._cfg)
        self._read_limit = self._line_limit + self._headers_limit + _READ_SLACK
        self._done: asyncio.Future[None] = self._loop.create_future()

    # -- the life of the connection -------------------------------------------------------

    async def run(self, sock: Any, ssl_context: ssl.SSLContext | None) -> None:
        """Take over the accepted socket ``sock`` and serve requests until the end."""
        kwargs: dict[str, Any] = {}
        if ssl_context is not None:
            kwargs = {"ssl": ssl_context, "ssl_handshake_timeout": self._server.head_timeout}
            self._tls = True
        try:
            await self._loop.connect_accepted_socket(lambda: self, sock, **kwargs)
        except (OSError, asyncio.TimeoutError) as exc:  # a failed TLS handshake, mostly
            self._server.worker.log.debug("Connection from %s failed: %s", self.peer, exc)
            sock.close()
            self._finished()
            return
        try:
            await self._serve()
        except Exception:  # a bug here must not take the worker's loop down
            self._server.worker.log.exception("Error serving connection from %s", self.peer)
        finally:
            self._close_transport()
            self._finished()

    async def _serve(self) -> None:
        number = 0
        while True:
            number += 1
            request = await self._read_request(number)
            if request is None:
                return
            container = self._server.container
            assert container is not None  # only WSGI apps are served on these connections
            self._server.mark_busy(self)
            try:
                keep_alive, tail = await self._loop.run_in_executor(
                    self._server.executor,
                    container,
                    request,
                    self,
                    self._server.keep_alive_allowed(),
                )
                if tail:
                    # A response the pool thread gathered whole: written from here, and
                    # flushed before the next request is read.
                    self.write_now(tail)
                    keep_alive = keep_alive and await self._flushed()
            finally:
                self._server.mark_idle(self)
            if not keep_alive or self.lost:
                return
            self._buffer[:0] = request.unreader.leftover()

    def _finished(self) -> None:
        self._server.forget(self)
        if not self._done.done():
            self._done.set_result(None)

    async def close(self) -> None:
        """Close the connection (after what is queued is sent) and wait for its end."""
        self._close_transport()
        await asyncio.shield(self._done)

    def _close_transport(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    # -- request heads --------------------------------------------------------------------

    async def _read_request(self, number: int) -> Any:
        """The next request, its head parsed by gunicorn; None when the connection ends
        (closed by the client, silent past the head timeout, or a malformed head refused)."""
        head_timeout = self._server.head_timeout
        keepalive = float(self._cfg.keepalive)
        now = self._loop.time()
        head_deadline = None if head_timeout is None else now + head_timeout
        # a kept-alive connection may stay silent `keepalive` seconds; once the next head
        # has begun, the head deadline (from the end of the previous response) applies
        idle_deadline = now + keepalive if number > 1 and keepalive > 0 else None
        new = len(self._buffer)
        while True:
            if new and self._worth_parsing(new):
                request = self._parse(number)
                if request is not _INCOMPLETE:
                    return request
            if self._eof or self.lost:
                return None
            before = len(self._buffer)
            deadline, timeout = head_deadline, head_timeout
            idle = idle_deadline is not None and not self._buffer
            if idle and (deadline is None or idle_deadline < deadline):  # type: ignore[operator]
                deadline, timeout = idle_deadline, keepalive
            remaining = None if deadline is None else deadline - self._loop.time()
            if remaining is not None and remaining <= 0:
                self._late(number, timeout)
                return None
            if self._buffer and not self._heard:
                self._heard = True  # part of a head, the rest still to come
                self._server.heard(self)
            try:
                await self._wait_for_data(remaining)
            except ClientGone:
                if not (self._eof or self.lost):
                    self._late(number, timeout)
                return None
            new = len(self._buffer) - before

    def _late(self, number: int, timeout: float | None) -> None:
        """The head missed its deadline: 408 if part of it came, logged once at info."""
        log = self._server.worker.log
        if self._buffer:
            log.info(
                "Closing connection from %s: request head not complete within %gs (408)",
                self.peer,
                timeout,
            )
            self.write_now(REPLY_408)
        elif number == 1:
            log.info("Closing connection from %s: no request within %gs", self.peer, timeout)
        else:
            log.debug("Closing kept-alive connection from %s: idle %gs", self.peer, timeout)

    def _worth_parsing(self, new: int) -> bool:
        """Whether the ``new`` bytes at the end of the buffer can change gunicorn's verdict
        on the head: a line ended, or a size limit was crossed."""
        total = len(self._buffer)
        if self._buffer.find(b"\n", total - new) >= 0 or total > self._headers_limit:
            return True
        return total - new <= self._line_limit + 2 < total

    def _parse(self, number: int) -> Any:
        """Parse the buffered head: a request, :data:`_INCOMPLETE`, or None once refused."""
        source = BodySource(bytes(self._buffer), self)
        try:
            request = Request(self._cfg, source, self.peer, number)
        except (StopIteration, NoMoreData):
            return _INCOMPLETE
        except Exception as exc:  # gunicorn's verdict: answer as gunicorn answers it
            self._refuse(exc)
            return None
        self._buffer.clear()
        source.live = True
        source.pace = Pace(current(), self._server.worker.log, self.peer, 0.0)
        source.pace.start_body()
        return request

    def _refuse(self, exc: Exception) -> None:
        worker = self._server.worker
        try:
            worker.handle_error(None, self.client, self.peer, exc)
        except Exception:
            worker.log.debug("Failed to send the error response.", exc_info=True)
        self._close_transport()

    # -- bytes in -------------------------------------------------------------------------

    async def _wait_for_data(self, timeout: float | None) -> None:
        """Wait for more bytes, the end of the client's input or the connection's loss.

        Raises:
            ClientGone: nothing happened within ``timeout`` seconds.
        """
        waiter = self._loop.create_future()
        self._readable = waiter
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            msg = f"no data from the client for {timeout:.1f}s"
            raise ClientGone(errno.ETIMEDOUT, msg) from None
        finally:
            self._readable = None

    async def receive(self, size: int, timeout: float | None, away: Away | None = None) -> bytes:
        """Up to ``size`` bytes from the client; ``b""`` once it has sent all it will.
        A wait for them tells ``away`` (the waiting pool thread gives its slot away).

        Raises:
            ClientGone: the connection was lost, or the client was silent ``timeout`` seconds.
        """
        while not self._buffer:
            if self.lost:
                raise ClientGone(errno.ECONNRESET, "connection lost")
            if self._eof:
                return b""
            if away is not None:
                away.now()
            await self._wait_for_data(timeout)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._reading_paused and len(self._buffer) < self._read_limit // 2:
            self._reading_paused = False
            if self._transport is not None:
                self._transport.resume_reading()
        return data

    def receive_from_thread(self, size: int, deadline: float | None) -> bytes:
        """:meth:`receive`, called from a pool thread; ``deadline`` bounds the wait."""
        timeout = self._server.silence_limit
        if deadline is not None:
            left = max(0.0, deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        away = Away(self._server.slots)
        future = asyncio.run_coroutine_threadsafe(self.receive(size, timeout, away), self._loop)
        try:
            return future.result()
        finally:
            away.back()

    # -- bytes out ------------------------------------------------------------------------

    async def send(self, data: bytes, away: Away | None = None) -> None:
        """Write ``data`` and wait until the kernel has taken all of it (a wait tells
        ``away``, as for :meth:`receive`).

        Raises:
            ClientGone: the connection is closed, or the client read nothing for the
                silence limit.
        """
        transport = self._transport
        if self.lost or transport is None or transport.is_closing():
            raise ClientGone(errno.EPIPE, "connection closed")
        transport.write(data)
        if away is not None and self._drained is not None:
            away.now()
        if not await self._flushed():
            raise ClientGone(errno.EPIPE, "connection lost while sending")

    async def _flushed(self) -> bool:
        """Wait until nothing written is left queued; False if the connection is lost
        (or was dropped because the client read nothing for the silence limit)."""
        transport = self._transport
        limit = self._server.silence_limit
        deadline = None if limit is None else self._loop.time() + limit
        while self._drained is not None and transport is not None:
            left = None if deadline is None else deadline - self._loop.time()
            try:
                if left is not None and left <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(asyncio.shield(self._drained), left)
            except asyncio.TimeoutError:
                self._server.worker.log.info(
                    "Closing connection from %s: client did not read the response for %gs",
                    self.peer,
                    limit,
                )
                transport.abort()
                return False
        return not self.lost

    def send_from_thread(self, data: bytes) -> None:
        """:meth:`send`, called from a pool thread."""
        away = Away(self._server.slots)
        future = asyncio.run_coroutine_threadsafe(self.send(data, away), self._loop)
        try:
            future.result()
        finally:
            away.back()

    def write_now(self, data: bytes) -> None:
        """Queue ``data`` without waiting (on the loop's thread: error pages)."""
        if not self.lost and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; a write counts as done only once nothing is left queued."""
        self._transport = cast("asyncio.Transport", transport)
        # Paused while anything is queued, resumed once it is all written. Not high=0:
        # asyncio's TLS layer pauses at size >= high, so 0 would pause an empty buffer
        # that nothing ever resumes (plain TCP pauses at size > high).
        self._transport.set_write_buffer_limits(high=1, low=0)

    def data_received(self, data: bytes) -> None:
        """Buffer what the client sent; stop reading while the buffer is full."""
        self._buffer += data
        if not self._reading_paused and len(self._buffer) > self._read_limit:
            self._reading_paused = True
            if self._transport is not None:
                self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        """The client sent all it will: it may still read, so a TCP transport stays open
        (TLS has no half-close: its transport closes, and asyncio warns if asked not to)."""
        self._eof = True
        self._wake()
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: wake whoever waits to read or to write."""
        self.lost = True
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        """Bytes are queued in the transport: writers wait for :meth:`resume_writing`."""
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        """Everything queued was written."""
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)
