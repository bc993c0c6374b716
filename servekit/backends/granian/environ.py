"""The WSGI environ under granian: the request only, as gunicorn fills it, or a refusal.

granian (2.8) starts every environ from a copy of the worker's ``os.environ`` (so a
deploy-time ``HTTP_*`` variable looks like a request header, and every secret of the
process environment reaches the app and its error pages), reports HTTP/1.0 as
``HTTP/1``, says ``wsgi.multiprocess`` is false with several workers, and trusts no proxy.
:class:`RequestPolicy` builds the environ from granian's request scope alone and applies
what gunicorn applies after parsing:

* ``X-Forwarded-Proto`` / ``-Protocol`` / ``-Ssl`` from a trusted peer set
  ``wsgi.url_scheme`` (conflicting ones: 400), and a trusted peer's ``SCRIPT_NAME``
  header splits the path;
* gunicorn's refusals of what granian's parser lets through and servekit can still see:
  an unconventional method, a repeated ``Host`` (granian joins repeats with a bare comma,
  so one ``Host: a,b`` is refused too), a target that is not a path, an unknown ``Expect`` (417), a
  ``Transfer-Encoding`` that is not one final ``chunked`` (400/501), a request line over
  4094 bytes (414) or a field line over 8190 (431).
"""

from __future__ import annotations

import html
import re
import sys
from http import HTTPStatus
from typing import Any

from servekit.access import TrustedProxies
from servekit.backends.granian.streams import EMPTY_INPUT, FileWrapper, Input

__all__ = ["Refusal", "RequestPolicy", "error_response"]

#: gunicorn's defaults: limit_request_line and limit_request_field_size
MAX_REQUEST_LINE = 4094
MAX_FIELD_LINE = 8190
_COMMON_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
_JOINED = re.compile(r",(?! )").search
_METHOD = re.compile(r"[!$%&'*+\-.^_`|~0-9A-Z]{3,20}").fullmatch
#: what a trusted proxy sends for an https request (gunicorn's secure_scheme_headers)
_SECURE_SCHEME = (
    ("HTTP_X_FORWARDED_PROTOCOL", "ssl"),
    ("HTTP_X_FORWARDED_PROTO", "https"),
    ("HTTP_X_FORWARDED_SSL", "on"),
)
_CODINGS = frozenset(("compress", "deflate", "gzip"))
#: the request keys a trusted proxy acts through
_PROXY_KEYS = frozenset((*(key for key, _ in _SECURE_SCHEME), "HTTP_SCRIPT_NAME"))
#: no value shorter than this can take a request near gunicorn's length limits
_LONG = 4000
_ERROR_PAGE = (
    "<html>\n  <head>\n    <title>{reason}</title>\n  </head>\n  <body>\n"
    "    <h1><p>{reason}</p></h1>\n    {detail}\n  </body>\n</html>\n"
)


class Refusal(Exception):
    """A request servekit answers itself with ``status``, then closes the connection."""

    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(f"{status.value} {status.phrase}: {detail}")
        self.status = status
        self.detail = detail

    def response(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body of the answer."""
        return error_response(self.status, self.detail)


def error_response(
    status: HTTPStatus, detail: str = ""
) -> tuple[int, list[tuple[str, str]], bytes]:
    """gunicorn's error page for ``status``, byte for byte, and its headers."""
    body = _ERROR_PAGE.format(reason=status.phrase, detail=html.escape(detail)).encode()
    return status.value, [("Content-Type", "text/html"), ("Connection", "close")], body


class RequestPolicy:
    """Builds each request's environ in a worker (one object per worker, shared by threads)."""

    def __init__(
        self, trusted: TrustedProxies, multiprocess: bool, unix: bool, max_body: int = 0
    ) -> None:
        self.trusted = trusted
        #: max_body_size (0: no limit)
        self.max_body = max_body
        #: a unix socket peer has no address: trusted, as gunicorn trusts it
        self.trust_all = unix or trusted.everyone
        self.unix = unix
        self._trust: dict[str, bool] = {}
        self.base: dict[str, Any] = {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": "granian",
            "wsgi.errors": sys.stderr,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "wsgi.multiprocess": multiprocess,
            "wsgi.multithread": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }

    def environ(self, scope: dict[str, Any]) -> dict[str, Any]:
        """The environ for granian's request ``scope`` (which it takes over).

        Raises:
            Refusal: a request gunicorn would refuse.
        """
        body = scope.pop("wsgi.input")
        if scope["SERVER_PROTOCOL"] == "HTTP/1":
            scope["SERVER_PROTOCOL"] = "HTTP/1.0"
        method = scope["REQUEST_METHOD"]
        if method not in _COMMON_METHODS and not _METHOD(method):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"invalid method {method!r}")
        # Every value is a str now: the longest tells whether a limit can be near.
        try:
            longest = max(map(len, scope.values()))
        except TypeError:  # a value that is not a str: look at each
            longest = _LONG + 1
        if longest > _LONG:
            _check_lengths(scope)
        _check_fields(scope)
        if not _PROXY_KEYS.isdisjoint(scope) and self.trusts(scope.get("REMOTE_ADDR")):
            _apply_proxy(scope)
        if self.unix:
            _server_from_host(scope)
        environ = self.base | scope
        bodiless = "CONTENT_LENGTH" not in scope and "HTTP_TRANSFER_ENCODING" not in scope
        if bodiless:
            environ["wsgi.input"] = EMPTY_INPUT
            return environ
        limit = self.max_body
        if limit and "CONTENT_LENGTH" in scope:
            declared = scope["CONTENT_LENGTH"]
            if declared.isdigit() and int(declared) > limit:
                raise Refusal(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"Content-Length {int(declared)} is over {limit} bytes",
                )
            limit = 0  # granian ends the body at its Content-Length
        environ["wsgi.input"] = Input(body, limit)
        return environ

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` may set the forwarding headers (remembered per address)."""
        if self.trust_all:
            return True
        known = self._trust.get(peer or "")
        if known is None:
            if len(self._trust) > 4096:
                self._trust.clear()
            known = self._trust[peer or ""] = peer in self.trusted
        return known


def _check_lengths(scope: dict[str, Any]) -> None:
    """gunicorn's request line and field line limits (414, 431)."""
    line = len(scope["REQUEST_METHOD"]) + len(scope["PATH_INFO"]) + 10
    query = scope["QUERY_STRING"]
    if query:
        line += len(query) + 1
    if line > MAX_REQUEST_LINE:
        raise Refusal(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    for key, value in scope.items():
        # "Name: value" and its CRLF, as gunicorn counts it.
        if key[:5] == "HTTP_" and len(key) + len(str(value)) - 1 > MAX_FIELD_LINE:
            raise Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"{key[5:]} too large")


def _check_fields(environ: dict[str, Any]) -> None:
    """gunicorn's refusals that the environ still shows (see the module docstring)."""
    host = environ.get("HTTP_HOST")
    if host is not None:
        if not host:
            del environ["HTTP_HOST"]  # granian's stand-in when the request has none
        elif "," in host and _JOINED(host):  # granian joins repeated fields with a bare comma
            raise Refusal(HTTPStatus.BAD_REQUEST, "more than one Host field")
    path = environ["PATH_INFO"]
    if path[:1] != "/" and (path != "*" or environ["REQUEST_METHOD"] != "OPTIONS"):
        raise Refusal(HTTPStatus.BAD_REQUEST, f"invalid request target {path!r}")
    expect = environ.get("HTTP_EXPECT")
    if expect is not None and expect.lower() != "100-continue":
        raise Refusal(HTTPStatus.EXPECTATION_FAILED, f"unknown expectation {expect!r}")
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    if coding is not None:
        _check_coding(environ, coding)


def _check_coding(environ: dict[str, Any], value: str) -> None:
    """gunicorn's Transfer-Encoding rules: one ``chunked``, last, on HTTP/1.1, without CL."""
    chunked = False
    for item in (part.strip(" \t").lower() for part in value.split(",")):
        if item == "chunked":
            if chunked:
                raise Refusal(HTTPStatus.BAD_REQUEST, "chunked more than once")
            chunked = True
        elif item == "identity" or item in _CODINGS:
            if chunked:
                raise Refusal(HTTPStatus.BAD_REQUEST, f"{item!r} after chunked")
        else:
            raise Refusal(HTTPStatus.NOT_IMPLEMENTED, f"unsupported transfer coding {value!r}")
    if not chunked:
        raise Refusal(HTTPStatus.BAD_REQUEST, "Transfer-Encoding does not end with chunked")
    if environ["SERVER_PROTOCOL"] == "HTTP/1.0" or "CONTENT_LENGTH" in environ:
        raise Refusal(HTTPStatus.BAD_REQUEST, "ambiguous framing (chunked with HTTP/1.0 or CL)")


def _apply_proxy(environ: dict[str, Any]) -> None:
    """A trusted peer's scheme headers and ``SCRIPT_NAME``, as gunicorn applies them."""
    scheme = None
    for key, secure in _SECURE_SCHEME:
        value = environ.get(key)
        if value is None:
            continue
        # Repeated fields arrive joined by commas: each one counts, as in gunicorn.
        for item in value.split(","):
            said = "https" if item.strip(" \t") == secure else "http"
            if scheme is not None and said != scheme:
                raise Refusal(HTTPStatus.BAD_REQUEST, "conflicting scheme headers")
            scheme = said
    if scheme is not None:
        environ["wsgi.url_scheme"] = scheme
    script_name = environ.get("HTTP_SCRIPT_NAME")
    if script_name:
        path = environ["PATH_INFO"]
        if not path.startswith(script_name):
            detail = f"request path {path!r} does not start with SCRIPT_NAME {script_name!r}"
            raise Refusal(HTTPStatus.INTERNAL_SERVER_ERROR, detail)
        environ["SCRIPT_NAME"] = script_name
        environ["PATH_INFO"] = path[len(script_name) :]


def _server_from_host(environ: dict[str, Any]) -> None:
    """On a unix socket, SERVER_NAME and SERVER_PORT from the Host field, as gunicorn does."""
    host = environ.get("HTTP_HOST", "")
    if not host:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = "", ""
        return
    name, colon, port = host.rpartition(":")
    if not colon or "]" in port:  # no port, or the end of a bracketed IPv6 address
        name, port = host, "443" if environ["wsgi.url_scheme"] == "https" else "80"
    environ["SERVER_NAME"], environ["SERVER_PORT"] = name, port
