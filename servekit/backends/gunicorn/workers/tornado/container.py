"""The WSGI container of the tornado worker: one request through the app, on a pool thread.

The environ comes from gunicorn's :func:`gunicorn.http.wsgi.create` and the response is
written by gunicorn's :class:`~gunicorn.http.wsgi.Response`, as in gunicorn's own sync and
gthread workers: the same environ keys and values (``wsgi.url_scheme`` and ``SCRIPT_NAME``
per ``forwarded_allow_ips``, ``wsgi.input_terminated``, ``wsgi.file_wrapper``, str
``REMOTE_PORT``), the same response framing (chunked for HTTP/1.1 without
Content-Length, no body for HEAD, header values stripped, repeated headers kept apart)
and the same error pages. Each piece the app yields is sent as it comes, and the next
is asked for only once the client's kernel has taken it.
"""

from __future__ import annotations

import errno
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gunicorn.http import wsgi
from gunicorn.http.errors import NoMoreData

from servekit.backends.gunicorn.workers.limits import begin_body
from servekit.backends.gunicorn.workers.slots import Slots
from servekit.backends.gunicorn.workers.tornado.bridge import ClientGone

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from servekit.backends.gunicorn.workers.tornado.connection import Connection

__all__ = ["Container", "StreamingResponse"]

#: how much of a ``wsgi.file_wrapper`` file is read (and sent) at a time
_FILE_BLOCK = 256 * 1024
#: an unread request body is read to its end before the connection is reused: at most
#: this much and this long (gunicorn's gthread bounds its drain the same way), else close
_DRAIN_MAX_BYTES = 64 * 1024
_DRAIN_SECONDS = 5.0
_DRAIN_STEP = 8192
#: errors that only say the client went away (logged at debug level, as gunicorn does)
_QUIET_ERRNOS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ETIMEDOUT)


class StreamingResponse(wsgi.Response):  # type: ignore[misc]
    """gunicorn's response writer, each write sent in one piece and waited for.

    The socket it writes to is a :class:`~.bridge.ClientSocket`.
    """

    def send_headers(self) -> None:
        """Send the response head, saying ``Connection: close`` when the request body the
        app left unread is too much to skip (or of unknown size) before the next request."""
        if not self.headers_sent and not _skippable(self.req):
            self.force_close()
        super().send_headers()

    def write(self, arg: bytes) -> None:
        """Send ``arg`` (and, the first time, the response head) to the client."""
        self.sock.cork()
        try:
            super().write(arg)
        finally:
            self.sock.uncork()

    def close(self) -> None:
        """End the response (the head if nothing was sent yet, the last chunk if chunked)."""
        self.sock.cork()
        try:
            super().close()
        finally:
            self.sock.uncork()

    def sendfile(self, respiter: Any) -> bool:
        """Send a ``wsgi.file_wrapper``'s file in large blocks.

        gunicorn would hand the file to ``socket.sendfile()``; the event loop owns the
        socket here, so the file is read and written instead, in blocks larger than the
        wrapper's own (each one a round trip to the loop).
        """
        if getattr(self, "_omits_body", False):  # HEAD, 1xx, 204, 304: close() sends the head
            return True
        read = respiter.filelike.read
        block = max(int(getattr(respiter, "blksize", 0) or 0), _FILE_BLOCK)
        while self.response_length is None or self.sent < self.response_length:
            data = read(block)
            if not data:
                break
            self.write(data)
        return True


class Container:
    """Runs a request through the WSGI app, the way gunicorn's workers do.

    Args:
        app: the WSGI application.
        worker: the gunicorn worker (its ``cfg``, ``log`` and ``handle_error``).
    """

    def __init__(self, app: WSGIApplication, worker: Any, slots: Slots | None = None) -> None:
        self._app = app
        self._worker = worker
        #: ``threads`` slots: at most that many requests in the app at once (see .slots)
        self.slots = slots
        self._multithread = int(worker.cfg.threads) > 1

    def __call__(self, req: Any, connection: Connection, keep_alive: bool) -> tuple[bool, bytes]:
        """Serve ``req`` (on a pool thread).

        Args:
            req: the request, as gunicorn's parser made it.
            connection: the client connection it came on.
            keep_alive: False when the response must close the connection (keep-alive
                off, the worker stopping).

        Returns:
            Whether the connection can take another request, and the end of the response
            still to be written by the loop (a body the app returned whole, as a list).
        """
        slots = self.slots
        if slots is None:
            return self._serve(req, connection, keep_alive)
        slots.take()
        try:
            return self._serve(req, connection, keep_alive)
        finally:
            slots.give()

    def _serve(self, req: Any, connection: Connection, keep_alive: bool) -> tuple[bool, bytes]:
        worker = self._worker
        resp: Any = None
        environ: dict[str, Any] = {}
        try:
            begin_body(req, None)
            worker.cfg.pre_request(worker, req)
            started = datetime.now()
            resp, environ = wsgi.create(
                req,
                connection.client,
                connection.peer,
                connection.server_address,
                worker.cfg,
                response_class=StreamingResponse,
            )
            environ["wsgi.multithread"] = self._multithread
            if not keep_alive:
                resp.force_close()
            complete, tail = self._respond(req, resp, environ, started, connection)
            if tail and complete and _unread(req) != 0:
                # Skipping the unread body may wait on the client: answer it first.
                connection.client.sendall(tail)
                tail = b""
        except (ClientGone, NoMoreData) as exc:
            _log_client_error(worker, exc)
            return False, b""
        except (Exception, SystemExit) as exc:
            self._fail(req, resp, connection, exc)
            return False, b""
        finally:
            try:
                worker.cfg.post_request(worker, req, environ, resp)
            except Exception:
                worker.log.exception("Exception in post_request hook")
        if not complete or resp.should_close() or connection.lost:
            return False, tail
        return _finish_body(req), tail

    def _respond(
        self,
        req: Any,
        resp: Any,
        environ: dict[str, Any],
        started: datetime,
        connection: Connection,
    ) -> tuple[bool, bytes]:
        """Call the app and send what it returns.

        Returns:
            Whether the whole body went out, and what is left to write (see ``__call__``).
        """
        result = self._app(environ, resp.start_response)
        # A list is in memory already: nothing to stream, so no waiting on each piece.
        whole = isinstance(result, (list, tuple))
        if whole:
            connection.client.cork()
        try:
            self._send_body(result, resp, environ, connection)
        except BaseException:
            if whole:  # what went out before the error, as gunicorn would have sent it
                connection.client.uncork()
            raise
        finally:
            self._worker.log.access(resp, req, environ, datetime.now() - started)
            close = getattr(result, "close", None)
            if close is not None:
                close()
        # A body shorter than its Content-Length leaves the client waiting for the rest.
        short = resp.response_length is not None and resp.sent < resp.response_length
        complete = not (short and not getattr(resp, "_omits_body", False))
        return complete, connection.client.take() if whole else b""

    @staticmethod
    def _send_body(result: Any, resp: Any, environ: dict[str, Any], connection: Connection) -> None:
        if isinstance(result, environ["wsgi.file_wrapper"]):
            resp.write_file(result)
        else:
            for item in result:
                resp.write(item)
                if connection.lost:  # stop at once, not after the next piece
                    raise ClientGone(errno.EPIPE, "the client disconnected")
        resp.close()

    def _fail(self, req: Any, resp: Any, connection: Connection, exc: BaseException) -> None:
        """Answer an exception from the app (or from reading the request) as gunicorn does.

        Called inside the ``except`` block, so the traceback is logged.
        """
        worker = self._worker
        if resp is not None and resp.headers_sent:
            # The client has a status line already: all that is left is to cut the
            # response short, which its framing (or the missing end) shows.
            worker.log.exception("Error handling request")
            return
        if resp is not None:
            resp.status_code = 500  # what the client gets (post_request and metrics see it)
        try:
            worker.handle_error(req, connection.client, connection.peer, exc)
        except Exception as error:
            worker.log.debug("Failed to send the error response: %s", error)


def _unread(req: Any) -> int | None:
    """Bytes of the request body not yet received from the client: 0 when it has all been
    read, None when that is unknown (a chunked body short of its last chunk)."""
    reader = getattr(req.body, "reader", None)
    remaining = getattr(reader, "length", None)  # gunicorn's LengthReader
    if isinstance(remaining, int):
        return remaining
    if reader is not None and getattr(reader, "parser", True) is None:  # a finished ChunkedReader
        return 0
    return None


def _skippable(req: Any) -> bool:
    """Whether the unread rest of the request body can be read and dropped after the response."""
    unread = _unread(req)
    return unread is not None and unread <= _DRAIN_MAX_BYTES


def _finish_body(req: Any) -> bool:
    """Read what the app left of the request body; whether the connection can be reused."""
    body = req.body
    if body is None or getattr(body, "failed", False):
        return False
    source = req.unreader
    source.deadline = time.monotonic() + _DRAIN_SECONDS
    drained = 0
    try:
        while data := body.read(_DRAIN_STEP):
            drained += len(data)
            if drained > _DRAIN_MAX_BYTES:
                return False
    except Exception:  # malformed, truncated or stalled: the next request's start is unknown
        return False
    finally:
        source.deadline = None
    return True


def _log_client_error(worker: Any, exc: BaseException) -> None:
    if isinstance(exc, NoMoreData) or getattr(exc, "errno", None) in _QUIET_ERRNOS:
        worker.log.debug("Ignored client disconnection: %s", exc)
    else:
        worker.log.exception("Socket error processing request.")
