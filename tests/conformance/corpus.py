"""Malformed, ambiguous and smuggling-shaped requests, each sent as raw bytes.

Written for this suite from RFC 9112 (message syntax, framing, chunked coding) and
RFC 9110 (fields); the expected outcome of every case is not written here: it is what
bare gunicorn sync does with the same bytes, measured at the start of the run.
A few well-formed cases are mixed in (valid chunk extensions, trailers, leading zeros,
obs-text) because accepting them is as much part of the contract as refusing the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

CRLF = b"\r\n"


@dataclass(frozen=True)
class Case:
    """One raw request: its group (a test function), a unique id, the bytes, a note."""

    group: str
    id: str
    raw: bytes
    note: str = ""


def msg(*lines: bytes | str, body: bytes = b"", end: bytes = CRLF) -> bytes:
    """``lines`` joined and ended by CRLF, the empty line (``end``), then ``body``."""
    encoded = [line.encode("latin-1") if isinstance(line, str) else line for line in lines]
    return CRLF.join(encoded) + CRLF + end + body


def post(*headers: bytes | str, body: bytes = b"", target: str = "/c") -> bytes:
    """A POST to ``target`` with Host and ``headers``, then ``body`` as given."""
    return msg(f"POST {target} HTTP/1.1", "Host: localhost", *headers, body=body)


def get(target: bytes | str = "/c", *headers: bytes | str, version: str = "HTTP/1.1") -> bytes:
    """A GET of ``target`` with Host and ``headers``."""
    line = target.encode("latin-1") if isinstance(target, str) else target
    return msg(b"GET " + line + b" " + version.encode(), "Host: localhost", *headers)


def chunked_post(body: bytes, *headers: bytes | str) -> bytes:
    """A POST with ``Transfer-Encoding: chunked`` and ``body`` as the raw chunked payload."""
    return post("Transfer-Encoding: chunked", *headers, body=body)


TE = "Transfer-Encoding: chunked"
HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"

_FRAMING = [
    Case("framing", "cl-valid", post("Content-Length: 5", body=b"hello"), "baseline"),
    Case("framing", "cl-zero-padded", post("Content-Length: 005", body=b"hello"), "1*DIGIT"),
    Case(
        "framing",
        "cl-duplicate-same",
        post("Content-Length: 5", "Content-Length: 5", body=b"hello"),
    ),
    Case(
        "framing",
        "cl-duplicate-conflict",
        post("Content-Length: 5", "Content-Length: 6", body=b"hello!"),
    ),
    Case("framing", "cl-list-same", post("Content-Length: 5, 5", body=b"hello")),
    Case("framing", "cl-list-conflict", post("Content-Length: 5, 6", body=b"hello!")),
    Case("framing", "cl-negative", post("Content-Length: -5", body=b"hello")),
    Case("framing", "cl-plus-sign", post("Content-Length: +5", body=b"hello")),
    Case("framing", "cl-hex", post("Content-Length: 0x5", body=b"hello")),
    Case("framing", "cl-underscore", post("Content-Length: 1_0", body=b"helloworld")),
    Case("framing", "cl-inner-space", post("Content-Length: 1 0", body=b"helloworld")),
    Case(
        "framing",
        "cl-superscript-digit",
        post(b"Content-Length: \xc2\xb2", body=b"hi"),
        "isdigit() but not DIGIT",
    ),
    Case(
        "framing",
        "cl-fullwidth-digit",
        post(b"Content-Length: \xef\xbc\x95", body=b"hello"),
        "int() accepts it",
    ),
    Case("framing", "cl-empty", post("Content-Length:", body=b"hello")),
    Case("framing", "cl-huge", post("Content-Length: 99999999999999999999999999", body=b"hello")),
    Case(
        "framing",
        "cl-and-te",
        post("Content-Length: 5", TE, body=HELLO_CHUNKED),
        "request smuggling",
    ),
    Case(
        "framing",
        "te-and-cl",
        post(TE, "Content-Length: 5", body=HELLO_CHUNKED),
        "request smuggling",
    ),
    Case(
        "framing",
        "cl-zero-then-request",
        post("Content-Length: 0", body=b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ),
    Case("framing", "te-gzip", post("Transfer-Encoding: gzip", body=b"hello")),
    Case("framing", "te-identity", post("Transfer-Encoding: identity", body=b"hello")),
    Case(
        "framing", "te-chunked-gzip", post("Transfer-Encoding: chunked, gzip", body=HELLO_CHUNKED)
    ),
    Case(
        "framing", "te-gzip-chunked", post("Transfer-Encoding: gzip, chunked", body=HELLO_CHUNKED)
    ),
    Case(
        "framing",
        "te-chunked-chunked",
        post("Transfer-Encoding: chunked, chunked", body=HELLO_CHUNKED),
    ),
    Case("framing", "te-two-headers", post(TE, TE, body=HELLO_CHUNKED)),
    Case(
        "framing",
        "te-upper-case",
        post("Transfer-Encoding: CHUNKED", body=HELLO_CHUNKED),
        "codings are case-insensitive",
    ),
    Case("framing", "te-xchunked", post("Transfer-Encoding: xchunked", body=HELLO_CHUNKED)),
    Case("framing", "te-chunked-param", post("Transfer-Encoding: chunked;q=1", body=HELLO_CHUNKED)),
    Case("framing", "te-empty", post("Transfer-Encoding:", body=b"hello")),
    Case("framing", "te-obs-folded", post("Transfer-Encoding:", " chunked", body=HELLO_CHUNKED)),
    Case("framing", "te-vertical-tab", post(b"Transfer-Encoding: \x0bchunked", body=HELLO_CHUNKED)),
    Case(
        "framing", "te-space-before-colon", post("Transfer-Encoding : chunked", body=HELLO_CHUNKED)
    ),
    Case(
        "framing", "te-http10", msg("POST /c HTTP/1.0", "Host: localhost", TE, body=HELLO_CHUNKED)
    ),
]

_CHUNKS = [
    Case("chunks", "chunk-valid", chunked_post(HELLO_CHUNKED), "baseline"),
    Case("chunks", "chunk-many", chunked_post(b"1\r\nh\r\n2\r\nel\r\n2\r\nlo\r\n0\r\n\r\n")),
    Case("chunks", "chunk-upper-hex", chunked_post(b"A\r\nhelloworld\r\n0\r\n\r\n")),
    Case("chunks", "chunk-lower-hex", chunked_post(b"a\r\nhelloworld\r\n0\r\n\r\n")),
    Case("chunks", "chunk-leading-zeros", chunked_post(b"0005\r\nhello\r\n0000\r\n\r\n")),
    Case("chunks", "chunk-plus-sign", chunked_post(b"+5\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-minus-sign", chunked_post(b"-5\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-underscore", chunked_post(b"1_0\r\nhelloworldhello!\r\n0\r\n\r\n")),
    Case("chunks", "chunk-leading-space", chunked_post(b" 5\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-trailing-space", chunked_post(b"5 \r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-0x-prefix", chunked_post(b"0x5\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-not-hex", chunked_post(b"g\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-empty-size", chunked_post(b"\r\nhello\r\n0\r\n\r\n")),
    Case(
        "chunks", "chunk-huge-size", chunked_post(b"FFFFFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n")
    ),
    Case(
        "chunks",
        "chunk-ext-valid",
        chunked_post(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
        "RFC 9112 7.1.1",
    ),
    Case("chunks", "chunk-ext-quoted", chunked_post(b'5;name="a value"\r\nhello\r\n0\r\n\r\n')),
    Case("chunks", "chunk-ext-bare-name", chunked_post(b"5;flag\r\nhello\r\n0;last\r\n\r\n")),
    Case(
        "chunks",
        "chunk-ext-bws",
        chunked_post(b"5 ;name=value\r\nhello\r\n0\r\n\r\n"),
        "BWS before ';'",
    ),
    Case("chunks", "chunk-ext-nul", chunked_post(b"5;na\x00me\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-ext-bare-cr", chunked_post(b"5;a\rb\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-data-too-long", chunked_post(b"5\r\nhelloXX\r\n0\r\n\r\n")),
    Case("chunks", "chunk-data-no-crlf", chunked_post(b"5\r\nhello0\r\n\r\n")),
    Case("chunks", "chunk-size-line-lf", chunked_post(b"5\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-data-lf", chunked_post(b"5\r\nhello\n0\r\n\r\n")),
    Case("chunks", "chunk-last-lf", chunked_post(b"5\r\nhello\r\n0\n\n")),
    Case(
        "chunks",
        "trailer-valid",
        chunked_post(b"5\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n"),
        "trailer section",
    ),
    Case("chunks", "trailer-two", chunked_post(b"5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n")),
    Case("chunks", "trailer-no-colon", chunked_post(b"5\r\nhello\r\n0\r\nnot a trailer\r\n\r\n")),
    Case(
        "chunks",
        "trailer-content-length",
        chunked_post(b"5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n"),
    ),
    Case("chunks", "missing-last-chunk", chunked_post(b"5\r\nhello\r\n"), "incomplete body"),
    Case(
        "chunks",
        "chunked-missing-final-crlf",
        chunked_post(b"5\r\nhello\r\n0\r\n"),
        "incomplete body",
    ),
]

_REQUEST_LINE = [
    Case("request-line", "get-valid", get("/c"), "baseline"),
    Case("request-line", "method-lowercase", msg("get /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-mixed-case", msg("Get /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-custom-token", msg("PURGE /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-bad-token", msg("G(ET /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-nul", msg(b"GE\x00T /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-non-ascii", msg(b"G\xc3\x89T /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-long", msg("A" * 40 + " /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "double-space", msg("GET  /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "tab-separators", msg("GET\t/c\tHTTP/1.1", "Host: localhost")),
    Case("request-line", "trailing-space", msg("GET /c HTTP/1.1 ", "Host: localhost")),
    Case("request-line", "leading-space", msg(" GET /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "leading-empty-line", b"\r\n" + get("/c"), "RFC 9112 2.2 allows one"),
    Case("request-line", "http09", msg("GET /c"), "HTTP/0.9"),
    Case("request-line", "missing-target", msg("GET HTTP/1.1", "Host: localhost")),
    Case("request-line", "space-in-target", msg("GET /c d HTTP/1.1", "Host: localhost")),
    Case("request-line", "version-0-99", get("/c", version="HTTP/0.99")),
    Case("request-line", "version-1-10", get("/c", version="HTTP/1.10")),
    Case("request-line", "version-1-2", get("/c", version="HTTP/1.2")),
    Case("request-line", "version-2-0", get("/c", version="HTTP/2.0")),
    Case("request-line", "version-lower-case", get("/c", version="http/1.1")),
    Case("request-line", "version-no-minor", get("/c", version="HTTP/1")),
    Case("request-line", "version-suffix", get("/c", version="HTTP/1.1x")),
    Case("request-line", "version-1-0", get("/c", version="HTTP/1.0"), "baseline"),
]

_TARGETS = [
    Case("targets", "absolute-form", get("http://localhost/c?x=1")),
    Case("targets", "absolute-form-other-host", get("http://example.com/c")),
    Case("targets", "absolute-form-https", get("https://localhost/c")),
    Case("targets", "asterisk-get", get("*")),
    Case("targets", "asterisk-options", msg("OPTIONS * HTTP/1.1", "Host: localhost")),
    Case("targets", "relative", get("c")),
    Case("targets", "authority-form-get", get("localhost:80")),
    Case(
        "targets",
        "authority-form-connect",
        msg("CONNECT localhost:80 HTTP/1.1", "Host: localhost:80"),
    ),
    Case("targets", "double-slash", get("//c/d")),
    Case("targets", "fragment", get("/c#frag")),
    Case("targets", "percent-encoded", get("/c%20d/caf%C3%A9")),
    Case("targets", "percent-invalid", get("/c%zz")),
    Case("targets", "encoded-slash", get("/a%2Fb")),
    Case("targets", "raw-utf8", get(b"/caf\xc3\xa9")),
    Case("targets", "nul", get(b"/c\x00d")),
    Case("targets", "ctl", get(b"/c\x01d")),
    Case("targets", "del", get(b"/c\x7fd")),
    Case("targets", "bare-cr", get(b"/c\rd")),
    Case("targets", "query-only", get("/?x=1&y")),
]

_FIELDS = [
    Case("fields", "host-missing-http11", msg("GET /c HTTP/1.1"), "RFC 9112 3.2: MUST 400"),
    Case("fields", "host-missing-http10", msg("GET /c HTTP/1.0")),
    Case("fields", "host-twice", msg("GET /c HTTP/1.1", "Host: a", "Host: b")),
    Case("fields", "host-twice-same", msg("GET /c HTTP/1.1", "Host: a", "Host: a")),
    Case("fields", "host-list", msg("GET /c HTTP/1.1", "Host: a, b")),
    Case("fields", "host-space", msg("GET /c HTTP/1.1", "Host: a b")),
    Case("fields", "host-empty", msg("GET /c HTTP/1.1", "Host:")),
    Case("fields", "obs-fold", get("/c", "X-Folded: a", " b")),
    Case("fields", "obs-fold-tab", get("/c", "X-Folded: a", "\tb")),
    Case("fields", "fold-first-line", msg("GET /c HTTP/1.1", " X-A: b", "Host: localhost")),
    Case("fields", "space-before-colon", get("/c", "X-A : b")),
    Case("fields", "tab-before-colon", get("/c", "X-A\t: b")),
    Case("fields", "no-colon", get("/c", "X-A b")),
    Case("fields", "empty-name", get("/c", ": b")),
    Case("fields", "name-bad-token", get("/c", "X(A): b")),
    Case("fields", "name-slash", get("/c", "X/A: b")),
    Case("fields", "name-non-ascii", get("/c", b"X-\xc3\xa9: b")),
    Case("fields", "name-nul", get("/c", b"X-\x00A: b")),
    Case("fields", "value-nul", get("/c", b"X-A: a\x00b")),
    Case("fields", "value-ctl", get("/c", b"X-A: a\x01b")),
    Case("fields", "value-escape", get("/c", b"X-A: a\x1bb")),
    Case("fields", "value-del", get("/c", b"X-A: a\x7fb")),
    Case("fields", "value-bare-cr", get("/c", b"X-A: a\rb")),
    Case("fields", "value-obs-text", get("/c", b"X-A: caf\xc3\xa9"), "obs-text is allowed"),
    Case("fields", "value-tab", get("/c", b"X-A: a\tb"), "HTAB is allowed"),
    Case("fields", "value-empty", get("/c", "X-A:"), "an empty value is allowed"),
    Case("fields", "whitespace-only-line", get("/c", "   ")),
    Case(
        "fields",
        "expect-unknown",
        post("Expect: something-else", "Content-Length: 5", body=b"hello"),
    ),
    Case(
        "fields",
        "get-with-body",
        msg("GET /c HTTP/1.1", "Host: localhost", "Content-Length: 5", body=b"hello"),
    ),
]

_LINE_ENDINGS = [
    Case("line-endings", "all-bare-lf", b"GET /c HTTP/1.1\nHost: localhost\n\n"),
    Case("line-endings", "request-line-lf", b"GET /c HTTP/1.1\nHost: localhost\r\n\r\n"),
    Case("line-endings", "header-line-lf", b"GET /c HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n"),
    Case("line-endings", "final-lf", b"GET /c HTTP/1.1\r\nHost: localhost\r\n\n"),
    Case("line-endings", "bare-cr-endings", b"GET /c HTTP/1.1\rHost: localhost\r\r"),
    Case("line-endings", "lf-cr", b"GET /c HTTP/1.1\n\rHost: localhost\n\r\n\r"),
    Case(
        "line-endings",
        "head-missing-final-crlf",
        b"GET /c HTTP/1.1\r\nHost: localhost\r\n",
        "incomplete head",
    ),
    Case(
        "line-endings",
        "body-shorter-than-cl",
        post("Content-Length: 10", body=b"hello"),
        "incomplete body",
    ),
]


def _long_target(line_length: int) -> bytes:
    """A GET whose request line (without CRLF) is ``line_length`` bytes long."""
    fixed = len("GET /c? HTTP/1.1")
    return get("/c?" + "a" * (line_length - fixed))


def _long_field(field_length: int) -> bytes:
    """A GET with one field line (without CRLF) ``field_length`` bytes long."""
    return get("/c", "X-Long: " + "v" * (field_length - len("X-Long: ")))


def _fields(count: int) -> bytes:
    """A GET with ``count`` header fields in all (Host included)."""
    return get("/c", *[f"X-F{i}: {i}" for i in range(count - 1)])


_LIMITS = [
    Case("limits", "request-line-4094", _long_target(4094), "gunicorn limit_request_line"),
    Case("limits", "request-line-4095", _long_target(4095)),
    Case("limits", "request-line-8200", _long_target(8200)),
    Case("limits", "request-line-70000", _long_target(70000)),
    Case(
        "limits", "field-8188", _long_field(8188), "gunicorn limit_request_field_size, CRLF counted"
    ),
    Case("limits", "field-8189", _long_field(8189)),
    Case("limits", "field-9000", _long_field(9000)),
    Case("limits", "field-70000", _long_field(70000)),
    Case("limits", "fields-100", _fields(100), "gunicorn limit_request_fields"),
    Case("limits", "fields-101", _fields(101)),
    Case("limits", "fields-300", _fields(300)),
]


# Second round: edges of each area (whitespace, encodings, limits of tokens) and other
# protocols spoken to an HTTP/1 port.
_FRAMING += [
    Case("framing", "cl-ows", post("Content-Length:   5  ", body=b"hello"), "OWS around the value"),
    Case("framing", "cl-tab", post("Content-Length:\t5", body=b"hello")),
    Case("framing", "cl-body-longer", post("Content-Length: 5", body=b"helloEXTRA")),
    Case("framing", "cl-2-pow-64", post("Content-Length: 18446744073709551616", body=b"hello")),
    Case("framing", "no-framing-with-bytes", post(body=b"hello"), "no CL, no TE: no body"),
    Case(
        "framing",
        "te-gzip-then-chunked-headers",
        post("Transfer-Encoding: gzip", TE, body=HELLO_CHUNKED),
    ),
    Case(
        "framing",
        "te-chunked-then-identity-headers",
        post(TE, "Transfer-Encoding: identity", body=HELLO_CHUNKED),
    ),
    Case(
        "framing",
        "te-chunked-trailing-comma",
        post("Transfer-Encoding: chunked,", body=HELLO_CHUNKED),
    ),
    Case("framing", "te-leading-comma", post("Transfer-Encoding: , chunked", body=HELLO_CHUNKED)),
    Case("framing", "te-trailing-ows", post("Transfer-Encoding: chunked  ", body=HELLO_CHUNKED)),
    Case("framing", "te-nul", post(b"Transfer-Encoding: chunked\x00", body=HELLO_CHUNKED)),
    Case("framing", "te-lowercase-name", post("transfer-encoding: chunked", body=HELLO_CHUNKED)),
    Case("framing", "cl-lowercase-name", post("content-length: 5", body=b"hello")),
    Case(
        "framing",
        "cl-te-http10",
        msg("POST /c HTTP/1.0", "Host: localhost", "Content-Length: 5", TE, body=HELLO_CHUNKED),
    ),
]

_CHUNKS += [
    Case("chunks", "chunk-empty-body", chunked_post(b"0\r\n\r\n")),
    Case(
        "chunks",
        "chunk-many-leading-zeros",
        chunked_post(b"00000000000000000005\r\nhello\r\n0\r\n\r\n"),
    ),
    Case("chunks", "chunk-upper-0x", chunked_post(b"0X5\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-leading-tab", chunked_post(b"\t5\r\nhello\r\n0\r\n\r\n")),
    Case(
        "chunks",
        "chunk-ext-bws-after-semicolon",
        chunked_post(b"5; name=value\r\nhello\r\n0\r\n\r\n"),
    ),
    Case(
        "chunks",
        "chunk-ext-bws-around-equals",
        chunked_post(b"5;name = value\r\nhello\r\n0\r\n\r\n"),
    ),
    Case(
        "chunks", "chunk-ext-space-in-value", chunked_post(b"5;name=va lue\r\nhello\r\n0\r\n\r\n")
    ),
    Case("chunks", "chunk-ext-many", chunked_post(b"5;a=1;b=2;c\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-ext-long", chunked_post(b"5;" + b"a" * 9000 + b"\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-size-then-garbage", chunked_post(b"5x\r\nhello\r\n0\r\n\r\n")),
    Case("chunks", "chunk-data-bare-cr", chunked_post(b"5\r\nhello\r0\r\n\r\n")),
    Case(
        "chunks",
        "chunk-after-last",
        chunked_post(b"5\r\nhello\r\n0\r\n\r\nGARBAGE"),
        "bytes after the body",
    ),
    Case("chunks", "trailer-obs-fold", chunked_post(b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n")),
    Case("chunks", "trailer-host", chunked_post(b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n")),
    Case(
        "chunks",
        "trailer-transfer-encoding",
        chunked_post(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ),
    Case("chunks", "trailer-nul", chunked_post(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n")),
    Case(
        "chunks", "trailer-space-before-colon", chunked_post(b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n")
    ),
]

_REQUEST_LINE += [
    Case("request-line", "method-with-digits", msg("M3 /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-with-dash", msg("M-SEARCH /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "method-with-tchar", msg("GE!T /c HTTP/1.1", "Host: localhost")),
    Case(
        "request-line",
        "method-lower-post",
        msg("post /c HTTP/1.1", "Host: localhost", "Content-Length: 5", body=b"hello"),
    ),
    Case("request-line", "method-connect-origin", msg("CONNECT /c HTTP/1.1", "Host: localhost")),
    Case("request-line", "two-leading-empty-lines", b"\r\n\r\n" + get("/c")),
    Case("request-line", "leading-lf", b"\n" + get("/c")),
    Case("request-line", "bom-before-method", b"\xef\xbb\xbf" + get("/c")),
    Case("request-line", "version-padded-major", get("/c", version="HTTP/01.1")),
    Case("request-line", "version-padded-minor", get("/c", version="HTTP/1.01")),
    Case("request-line", "version-space", msg("GET /c HTTP/ 1.1", "Host: localhost")),
    Case("request-line", "version-0-9", get("/c", version="HTTP/0.9")),
    Case("request-line", "version-1-9", get("/c", version="HTTP/1.9")),
    Case("request-line", "version-9-9", get("/c", version="HTTP/9.9")),
    Case("request-line", "version-nul", get("/c", version="HTTP/1.1\x00")),
    Case("request-line", "version-only", msg("HTTP/1.1", "Host: localhost")),
]

_TARGETS += [
    Case("targets", "encoded-nul", get("/c%00d")),
    Case("targets", "encoded-latin1", get("/caf%E9")),
    Case("targets", "encoded-dot-segments", get("/a/%2e%2e/b")),
    Case("targets", "dot-segments", get("/a/../b/./c")),
    Case("targets", "two-question-marks", get("/c?a?b")),
    Case("targets", "semicolon-params", get("/c;x=1?y=2")),
    Case("targets", "query-without-path", get("?x=1")),
    Case("targets", "empty-query", get("/c?")),
    Case("targets", "backslash", get("/c\\d")),
    Case("targets", "braces-and-pipe", get("/c{d}|e^f")),
    Case("targets", "double-quote", get('/c"d')),
    Case("targets", "absolute-form-no-path", get("http://localhost")),
    Case("targets", "absolute-form-userinfo", get("http://user:pw@localhost/c")),
    Case("targets", "absolute-form-port", get("http://localhost:8080/c?x=1")),
    Case("targets", "absolute-form-upper-scheme", get("HTTP://localhost/c")),
    Case("targets", "absolute-form-ftp", get("ftp://localhost/c")),
    Case("targets", "scheme-only", get("http:/c")),
    Case("targets", "high-byte-in-query", get(b"/c?x=\xff")),
]

_FIELDS += [
    Case("fields", "value-ows-stripped", get("/c", "X-A:   b   ")),
    Case("fields", "value-trailing-tab", get("/c", "X-A: b\t")),
    Case("fields", "value-inner-spaces", get("/c", "X-A: a  b")),
    Case("fields", "value-with-colon", get("/c", "X-A: a:b:c")),
    Case("fields", "value-latin1", get("/c", b"X-A: \xe9\xff")),
    Case("fields", "name-upper-case", get("/c", "X-UPPER: 1")),
    Case("fields", "name-lower-host", msg("GET /c HTTP/1.1", "host: localhost")),
    Case("fields", "name-long", get("/c", "X-" + "n" * 1000 + ": 1")),
    Case("fields", "name-trailing-dot", get("/c", "X-A.: 1"), "'.' is a tchar"),
    Case(
        "fields",
        "content-type-twice",
        post(
            "Content-Type: text/plain",
            "Content-Type: text/html",
            "Content-Length: 5",
            body=b"hello",
        ),
    ),
    Case("fields", "host-port", msg("GET /c HTTP/1.1", "Host: localhost:8080")),
    Case("fields", "host-bad-port", msg("GET /c HTTP/1.1", "Host: a:b")),
    Case("fields", "host-ipv6", msg("GET /c HTTP/1.1", "Host: [::1]:80")),
    Case("fields", "host-userinfo", msg("GET /c HTTP/1.1", "Host: user@localhost")),
    Case("fields", "host-nul", msg("GET /c HTTP/1.1", b"Host: local\x00host")),
    Case(
        "fields",
        "expect-100-uppercase",
        post("Expect: 100-CONTINUE", "Content-Length: 5", body=b"hello"),
    ),
    Case(
        "fields",
        "expect-http10",
        msg(
            "POST /c HTTP/1.0",
            "Host: localhost",
            "Expect: something",
            "Content-Length: 5",
            body=b"hello",
        ),
    ),
    Case(
        "fields",
        "connection-upgrade-h2c",
        get(
            "/c",
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
        ),
    ),
    Case(
        "fields",
        "upgrade-websocket",
        get(
            "/c",
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ),
    ),
    Case(
        "fields",
        "x-forwarded-proto-twice",
        get("/c", "X-Forwarded-Proto: https", "X-Forwarded-Proto: http"),
        "conflicting scheme headers",
    ),
    Case("fields", "x-forwarded-proto-bogus", get("/c", "X-Forwarded-Proto: gopher")),
]

_LINE_ENDINGS += [
    Case("line-endings", "cr-cr-lf", b"GET /c HTTP/1.1\r\r\nHost: localhost\r\n\r\n"),
    Case("line-endings", "header-ends-cr-space", b"GET /c HTTP/1.1\r\nHost: localhost\r \n\r\n"),
    Case(
        "line-endings",
        "space-only-line-before-end",
        b"GET /c HTTP/1.1\r\nHost: localhost\r\n \r\n\r\n",
    ),
    Case("line-endings", "only-crlfs", b"\r\n\r\n\r\n\r\n"),
]

_OTHER_PROTOCOLS = [
    Case(
        "other-protocols",
        "http2-preface",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "prior-knowledge h2c",
    ),
    Case(
        "other-protocols",
        "proxy-protocol-v1",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n" + get("/c"),
    ),
    Case(
        "other-protocols",
        "proxy-protocol-v2",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x04\x57\x08\xae"
        + get("/c"),
    ),
    Case(
        "other-protocols",
        "tls-client-hello",
        bytes.fromhex("160301002f0100002b0303") + b"\x00" * 32 + bytes.fromhex("000002002f0100"),
    ),
    Case("other-protocols", "ssh-banner", b"SSH-2.0-OpenSSH_9.6\r\n"),
    Case("other-protocols", "smtp-helo", b"HELO example.com\r\n\r\n"),
    Case("other-protocols", "binary-garbage", bytes(range(256))),
]

CASES: list[Case] = [
    *_FRAMING,
    *_CHUNKS,
    *_REQUEST_LINE,
    *_TARGETS,
    *_FIELDS,
    *_LINE_ENDINGS,
    *_LIMITS,
    *_OTHER_PROTOCOLS,
]
GROUPS: list[str] = list(dict.fromkeys(case.group for case in CASES))


def by_group(group: str) -> list[Case]:
    """The cases of ``group``, in order."""
    return [case for case in CASES if case.group == group]
