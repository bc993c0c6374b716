"""servekit's request handler for werkzeug's servers: strict parsing, gunicorn's framing."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import ssl
import time
import traceback
from http import HTTPStatus
from http.client import HTTPMessage
from typing import Any, ClassVar

from werkzeug.serving import WSGIRequestHandler, connection_dropped_errors

from servekit.access import TrustedProxies, access_fields
from servekit.backends.werkzeug.body import BodyTooLarge, open_body
from servekit.backends.werkzeug.deadlines import (
    Cut,
    Limits,
    Pace,
    PacedReader,
    PacedWriter,
    peer_text,
)
from servekit.backends.werkzeug.head import Incomplete, Refusal, RequestHead, Trust, read_head
from servekit.backends.werkzeug.wsgi import Response, error_response, make_environ
from servekit.logs import get_logger

__all__ = ["Handler", "linger"]

#: how long, and how many bytes, a closing connection reads of what the client still sends
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1 << 20


class Handler(WSGIRequestHandler):
    """Reads each request as strictly as gunicorn (:mod:`.head`), serves it, logs it, closes.

    Neither http.server's parsing (it takes what gunicorn refuses) nor werkzeug's
    ``run_wsgi`` (body framing, ``HEAD``, the environ: see :mod:`.wsgi`) is used; one
    request per connection, as with gunicorn's sync worker. The connection is read and
    written within the slow-client deadlines (:mod:`.deadlines`).
    """

    access_log: ClassVar[bool] = True
    #: request headers to log as fields (the ``access_log_fields`` option)
    access_headers: ClassVar[tuple[str, ...]] = ()
    #: whose X-Forwarded-For the access log's ``client`` believes (``forwarded_allow_ips``)
    access_trust: ClassVar[TrustedProxies] = TrustedProxies("127.0.0.1,::1")
    trust: ClassVar[Trust] = Trust()
    #: the slow-client deadlines (``header_timeout``, ``body_min_rate``, ``max_body_size``);
    #: werkzeug waits forever, so one stalled client stopped ``dev`` for everybody, and
    #: held a thread (threaded) or one of the ``workers`` processes for good
    limits: ClassVar[Limits] = Limits()
    _status: int | str | None = None
    head: RequestHead
    pace: Pace

    def setup(self) -> None:
        """``StreamRequestHandler.setup`` with ``rfile``/``wfile`` that keep the deadlines."""
        self.connection = sock = self.request
        sock.settimeout(self.limits.quantum)
        self.pace = Pace(self.limits, self.client_address)
        self.rfile = io.BufferedReader(PacedReader(sock, self.pace))
        self.wfile = PacedWriter(sock, self.pace)

    def handle_one_request(self) -> None:
        """Read and check one request head, then serve it (or refuse it)."""
        self.close_connection = True
        self.command = self.path = self.requestline = ""
        self.request_version = ""
        try:
            head = read_head(self.rfile, self.trust.trusts(self.client_address))
        except Refusal as refusal:
            self._refuse(refusal)
            return
        except (Cut, Incomplete):
            return  # a missed deadline (logged, answered) or a client gone
        if head is None:
            return
        self.pace.start_body()
        self.command, self.path, self.request_version = head.method, head.target, head.protocol
        self.requestline = f"{head.method} {head.target} {head.protocol}"
        self.headers = HTTPMessage()
        for name, value in head.fields:
            self.headers[name] = value
        self.head = head
        limit = self.limits.max_body_size
        if limit and head.length is not None and head.length > limit:
            self._refuse(BodyTooLarge(f"Content-Length {head.length} is over {limit} bytes"))
            return
        self.run_wsgi()

    def run_wsgi(self) -> None:
        """Serve the request read by :meth:`handle_one_request`, and log it."""
        started = time.perf_counter()
        self._status = None
        try:
            self._exchange(self.head)
        finally:
            if self.access_log:
                self._log_access(started)

    def _exchange(self, head: RequestHead) -> None:
        body, chunked = open_body(self.rfile, head.length, self.limits.max_body_size)
        response = Response(self.wfile, head, self.version_string())
        start_response = response.start_response
        if chunked is not None and self.limits.max_body_size:
            start_response = _refusing_past_the_limit(chunked, start_response)
        try:
            self.environ = environ = make_environ(
                head, body, self._listener(), self.client_address, self._is_tls()
            )
            environ.update(self._werkzeug_environ())
            if head.expect_continue:
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            result = self.server.app(environ, start_response)
            try:
                for data in result:
                    response.write(data)
                response.finish()
            finally:
                if hasattr(result, "close"):
                    result.close()
        except connection_dropped_errors:
            return  # the client went away (Incomplete too): nobody to answer
        except Exception as exc:
            self._failed(exc, response)
            return
        self._status = response.code

    def _failed(self, exc: Exception, response: Response) -> None:
        """A refusal or an app error: its status if nothing was sent yet, else a cut."""
        if isinstance(exc, Refusal):
            refusal = exc
        else:
            text = "".join(traceback.format_exception(exc))
            self.server.log("error", "Error on request:\n%s", text)
            refusal = Refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "")
        if not response.headers_sent:
            self._refuse(refusal)
            return
        if isinstance(refusal, BodyTooLarge):
            self._log_cut(refusal.detail)
        elif refusal is exc:
            self.log_error("refused after the response began: %s", refusal)
        self._status = response.code  # the response is cut short; the connection closes

    def _refuse(self, refusal: Refusal) -> None:
        if isinstance(refusal, BodyTooLarge):
            self._log_cut(f"{refusal.detail} (413)")
        self.log_error("code %d, message %s", refusal.status.value, refusal.detail)
        self.log_request(refusal.status.value)
        with contextlib.suppress(OSError):
            self.wfile.write(error_response(refusal, self.version_string()))

    def _log_cut(self, reason: str) -> None:
        text = f"Closing connection from {peer_text(self.client_address)}: {reason}"
        get_logger().info("werkzeug", message=text)

    def _listener(self) -> tuple[str, str] | None:
        address = self.server.server_address
        return (str(address[0]), str(address[1])) if isinstance(address, tuple) else None

    def _is_tls(self) -> bool:
        return self.server.ssl_context is not None

    def _werkzeug_environ(self) -> dict[str, Any]:
        """What werkzeug's own environ adds to the PEP 3333 keys."""
        extra: dict[str, Any] = {
            "wsgi.multithread": self.server.multithread,
            "wsgi.multiprocess": self.server.multiprocess,
            "werkzeug.socket": self.connection,
            "SERVER_SOFTWARE": self.server_version,
        }
        getpeercert = getattr(self.connection, "getpeercert", None)
        if getpeercert is not None:
            with contextlib.suppress(ValueError):
                cert = getpeercert(binary_form=True)
                if cert is not None:
                    extra["SSL_CLIENT_CERT"] = ssl.DER_cert_to_PEM_cert(cert)
        return extra

    def _log_access(self, started: float) -> None:
        path, _, query = self.path.partition("?")
        remote = self.client_address[0] if isinstance(self.client_address, tuple) else ""
        get_logger().info(
            "request",
            method=self.command,
            path=path,
            query=query,
            status=self._status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            pid=os.getpid(),
            remote=remote,
            **access_fields(self._access_environ(remote), self.access_trust, self.access_headers),
        )

    def _access_environ(self, remote: str) -> dict[str, Any]:
        """The parts of the request the access fields are read from, environ-shaped."""
        environ: dict[str, Any] = {
            "REMOTE_ADDR": remote,
            "SERVER_PROTOCOL": getattr(self, "request_version", None),
        }
        headers = getattr(self, "headers", None)
        if headers is not None:
            for name, value in headers.items():
                key = "HTTP_" + name.upper().replace("-", "_")
                if "_" not in name and key not in environ:
                    environ[key] = value
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        text = str(getattr(code, "value", code))
        self._status = int(text) if text.isdigit() else text

    def log_error(self, format: str, *args: Any) -> None:
        get_logger().warning("http_error", message=(format % args) if args else format)

    def log_message(self, format: str, *args: Any) -> None:
        get_logger().info("http", message=(format % args) if args else format)


def linger(sock: socket.socket) -> None:
    """Half-close, then read what the client still sends for a moment (RFC 9112 9.6).

    Closing with unread bytes in the receive buffer makes the kernel send a reset,
    which can destroy the response the client has not read yet (a refused request
    whose body follows, a pipelined request): gunicorn lingers the same way.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    if isinstance(sock, ssl.SSLSocket):
        return
    deadline = time.monotonic() + _LINGER_SECONDS
    drained = 0
    with contextlib.suppress(OSError):
        while drained < _LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                break
            drained += len(data)


def _refusing_past_the_limit(chunked: Any, start_response: Any) -> Any:
    """``start_response`` that raises the body's :class:`BodyTooLarge` again once a read
    went past ``max_body_size``: a 413 even when the app (Flask, Django) caught it."""

    def checked(status: str, headers: Any, exc_info: Any = None) -> Any:
        if chunked.too_large is not None:
            raise chunked.too_large
        return start_response(status, headers, exc_info)

    return checked
