"""servekit's WSGI layer beneath granian: one call per request, from granian's Rust threads.

It takes the place of granian's own Python glue (``granian.wsgi._callback_wrapper``):
granian calls ``handle(proto, scope)`` on one of its blocking threads, and servekit builds
the environ (:mod:`.environ`), runs the app with its own ``start_response``
(:mod:`.response`), hands the body to granian (``proto.response_bytes`` for a list,
``proto.response_iter`` otherwise) and logs the ``request`` event. What it fixes in
granian's behaviour:

* a generator that calls ``start_response`` on its first iteration gets its own status
  and headers (granian sent ``200`` and no headers before the first chunk);
* an exception before any byte went out is a logged 500 (granian: an empty 500 and a
  traceback on its own logger); a refused status or header too;
* no body for 1xx, 204 and 304 responses, and no Content-Length for 1xx and 204;
* the body stops at the Content-Length the app declared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from servekit.access import TrustedProxies, access_fields
from servekit.backends.granian.environ import Refusal, RequestPolicy, error_response
from servekit.backends.granian.response import Response
from servekit.backends.granian.streams import Body, BodyTooLarge, Input
from servekit.logs import get_logger

__all__ = ["AccessLog", "make_handler"]

Handler = Callable[[Any, dict[str, Any]], int]

_, _ERROR_HEADERS, _ERROR_PAGE = error_response(HTTPStatus.INTERNAL_SERVER_ERROR)


class AccessLog:
    """The ``request`` event, as the gunicorn strategies log it."""

    def __init__(self, enabled: bool, trusted: TrustedProxies, extra: tuple[str, ...]) -> None:
        self.enabled = enabled
        self.trusted = trusted
        self.extra = extra
        self.pid = os.getpid()

    def __call__(self, environ: dict[str, Any], status: int, sent: int, started: float) -> None:
        """Log one request that ended with ``status`` after ``sent`` body bytes."""
        get_logger().info(
            "request",
            method=environ.get("REQUEST_METHOD"),
            path=environ.get("PATH_INFO") or "-",
            query=environ.get("QUERY_STRING", ""),
            status=status,
            bytes=sent,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            pid=self.pid,
            remote=environ.get("REMOTE_ADDR"),
            **access_fields(environ, self.trusted, self.extra),
        )


def make_handler(app: Callable[..., Any], policy: RequestPolicy, access: AccessLog) -> Handler:
    """The callable granian runs per request, serving ``app``."""

    def handle(proto: Any, scope: dict[str, Any]) -> int:
        started = time.perf_counter() if access.enabled else 0.0
        try:
            environ = policy.environ(scope)
        except Refusal as refusal:
            if refusal.status is HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
                _log_too_large(scope, refusal.detail)
            else:
                get_logger().warning(
                    f"Invalid request from ip={scope.get('REMOTE_ADDR')}: {refusal}",
                    logger="granian",
                )
            status, headers, body = refusal.response()
            proto.response_bytes(status, headers, body)
            if access.enabled:
                access(scope, status, len(body), started)
            return status
        status, sent = _respond(proto, app, environ)
        if access.enabled:
            access(environ, status, sent, started)
        return status

    return handle


def _respond(proto: Any, app: Callable[..., Any], environ: dict[str, Any]) -> tuple[int, int]:
    """Run the app and hand its response to granian; return the status and bytes sent."""
    response = Response()
    body_input = environ["wsgi.input"]
    if type(body_input) is Input and body_input.limited:
        response.guard = body_input
    iterable: Any = None
    try:
        iterable = app(environ, response.start_response)
        if response.status is not None and isinstance(iterable, (list, tuple)):
            return _send_bytes(proto, response, iterable)
        iterator, pending = _first_chunks(iterable, response)
    except BodyTooLarge as exc:
        _close_quietly(iterable)
        _log_too_large(environ, str(exc))
        status, headers, page = error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc))
        proto.response_bytes(status, headers, page)
        return status, len(page)
    except Exception:
        _close_quietly(iterable)
        get_logger().exception("Error handling request", path=environ.get("PATH_INFO"))
        proto.response_bytes(500, _ERROR_HEADERS, _ERROR_PAGE)
        return 500, len(_ERROR_PAGE)
    code = response.code
    if code < 200 or code in (204, 304):
        _close_quietly(iterable)
        headers = response.headers if code == 304 else response.without_length()
        proto.response_bytes(code, headers, b"")
        return code, 0
    body = Body(pending, iterator, iterable, response.length)
    response.started = True
    proto.response_iter(code, response.headers, body)
    return code, body.sent


def _send_bytes(
    proto: Any, response: Response, parts: list[bytes] | tuple[bytes, ...]
) -> tuple[int, int]:
    """A list or tuple body: joined and sent at once (granian's fast path)."""
    if len(parts) == 1 and not response.chunks and type(parts[0]) is bytes:
        data = parts[0]
    else:
        data = b"".join([*response.chunks, *parts])  # TypeError (a 500) for a part not bytes
    code = response.code
    if code < 200 or code in (204, 304):
        headers = response.headers if code == 304 else response.without_length()
        proto.response_bytes(code, headers, b"")
        return code, 0
    if response.length is not None and len(data) > response.length:
        data = data[: response.length]
    response.started = True
    proto.response_bytes(code, response.headers, data)
    return code, len(data)


def _first_chunks(iterable: Any, response: Response) -> tuple[Iterator[bytes], list[bytes]]:
    """Iterate until ``start_response`` has been called (lazily, by a generator).

    Returns the iterator and the bytes to send first: ``write()``'s, then what was
    iterated while looking for the status.

    Raises:
        AssertionError: the iterable ended without ``start_response`` being called.
    """
    iterator = iter(iterable)
    early: list[bytes] = []
    while response.status is None:
        try:
            early.append(next(iterator))
        except StopIteration:
            if response.status is not None:
                break  # called on the last iteration: an empty body
            msg = "the app returned without calling start_response()"
            raise AssertionError(msg) from None
    return iterator, [*response.chunks, *early]


def _log_too_large(environ: dict[str, Any], detail: str) -> None:
    """The 413 event, as the other strategies log it (info)."""
    peer = f"{environ.get('REMOTE_ADDR')}:{environ.get('REMOTE_PORT', '-')}"
    get_logger().info(f"Closing connection from {peer}: {detail} (413)", logger="granian")


def _close_quietly(iterable: Any) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            get_logger().exception("Error closing the response iterable")
