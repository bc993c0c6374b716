"""Request headers into the environ on every strategy: repeated fields, underscored names
(dropped, so they cannot spoof a dashed one), and proxy headers from a trusted address
(127.0.0.1 is trusted by default): ``X-Forwarded-Proto`` and gunicorn's ``SCRIPT_NAME``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.conftest import STRATEGIES, WITH_REFERENCE, Servers
from tests.conformance.wire import fetch

pytestmark = [pytest.mark.conformance, pytest.mark.server]


def _environ(port: int, headers: list[tuple[str, str]], target: str = "/env") -> dict[str, Any]:
    response = fetch(port, "GET", target, headers)
    assert response.status == 200, f"{response.status} {response.body[:200]!r}"
    seen: dict[str, Any] = response.json()
    return seen


REPEATED = [
    ("X-Multi", "a"),
    ("X-Multi", "b"),
    ("X-Multi", "c, d"),
    ("Accept", "text/html"),
    ("Accept", "application/json"),
    ("Cookie", "a=1"),
    ("Cookie", "b=2"),
    ("Cache-Control", "no-cache"),
    ("cache-control", "no-store"),
]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_repeated_headers(servers: Servers, strategy: str) -> None:
    """Repeated header fields are joined into one HTTP_* value as on the reference."""
    keys = ("HTTP_X_MULTI", "HTTP_ACCEPT", "HTTP_COOKIE", "HTTP_CACHE_CONTROL")
    want = _environ(servers.reference, REPEATED)["http"]
    got = _environ(servers.port(strategy), REPEATED)["http"]
    assert {k: got.get(k) for k in keys} == {k: want.get(k) for k in keys}


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
def test_underscore_headers_dropped(servers: Servers, strategy: str) -> None:
    """Header names with underscores are dropped: ``X_Forwarded_For`` neither becomes nor
    joins ``HTTP_X_FORWARDED_FOR``."""
    port = servers.port(strategy)
    alone = _environ(port, [("X_Forwarded_For", "6.6.6.6"), ("Foo_Bar", "1")])["http"]
    assert "HTTP_X_FORWARDED_FOR" not in alone, f"{strategy}: {alone}"
    assert "HTTP_FOO_BAR" not in alone, f"{strategy}: {alone}"
    both = _environ(port, [("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "6.6.6.6")])
    assert both["http"].get("HTTP_X_FORWARDED_FOR") == "10.0.0.1", f"{strategy}: {both['http']}"


@pytest.mark.parametrize("strategy", WITH_REFERENCE)
@pytest.mark.parametrize("proto,scheme", [("https", "https"), ("http", "http")])
def test_forwarded_proto_from_trusted_proxy(
    servers: Servers, strategy: str, proto: str, scheme: str
) -> None:
    """``X-Forwarded-Proto`` from 127.0.0.1 (trusted by default) sets ``wsgi.url_scheme``."""
    seen = _environ(servers.port(strategy), [("X-Forwarded-Proto", proto)])
    assert seen["url_scheme"] == scheme, f"{strategy}: wsgi.url_scheme {seen['url_scheme']!r}"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_script_name_from_trusted_proxy(servers: Servers, strategy: str) -> None:
    """A ``SCRIPT_NAME`` header from a trusted proxy splits the path as on the reference."""

    def split(port: int) -> tuple[Any, Any]:
        response = fetch(port, "GET", "/mount/env/x", [("SCRIPT_NAME", "/mount")])
        if response.status != 200:
            return response.status, None
        seen = response.json()
        return seen["script_name"], seen["path_info"]

    want = split(servers.reference)
    assert want == ("/mount", "/env/x")
    assert split(servers.port(strategy)) == want
