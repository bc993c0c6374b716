"""Real werkzeug servers in subprocesses: concurrency per strategy and a graceful drain."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any

import pytest

from tests.conftest import assert_drains, burst, get

pytestmark = pytest.mark.server


def test_dev_serves_one_at_a_time(serve_app: Any) -> None:
    """dev: three 0.3 s requests run one after another."""
    server = serve_app(strategy="dev")
    elapsed, statuses = burst(server.url, 3, "/sleep?s=0.3")
    assert statuses == [200, 200, 200]
    assert elapsed >= 0.85


@pytest.mark.parametrize(("strategy", "options"), [("threaded", {}), ("processes", {"workers": 3})])
def test_threaded_and_processes_serve_at_once(
    serve_app: Any, strategy: str, options: dict[str, Any]
) -> None:
    """threaded and processes=3: three 0.3 s requests overlap."""
    server = serve_app(strategy=strategy, **options)
    elapsed, statuses = burst(server.url, 3, "/sleep?s=0.3")
    assert statuses == [200, 200, 200]
    assert elapsed < 0.6


@pytest.mark.parametrize("strategy", ["dev", "threaded", "processes"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_request_in_flight(serve_app: Any, strategy: str, sig: int) -> None:
    """SIGTERM/SIGINT during a 1.5 s request: it completes with 200, then exit 0."""
    server = serve_app(strategy=strategy)
    assert_drains(server, sig)
    assert any(e.get("event") == "stopped" for e in server.events())


def test_graceful_timeout_bounds_the_drain(serve_app: Any) -> None:
    """A request longer than graceful_timeout does not hold the exit forever."""
    server = serve_app(strategy="threaded", graceful_timeout=1)
    client = threading.Thread(target=lambda: _swallow(server.url, "/sleep?s=5"))
    client.start()
    time.sleep(0.3)
    start = time.monotonic()
    code = server.stop(signal.SIGTERM)
    assert code == 0
    assert time.monotonic() - start < 4
    client.join(10)


def _swallow(url: str, path: str) -> None:
    with contextlib.suppress(Exception):
        get(url, path, timeout=10)


def test_access_log_event(serve_app: Any) -> None:
    """Each request is one JSON event with method, path, status, duration and pid."""
    server = serve_app(strategy="threaded")
    get(server.url, "/sleep?s=0.01")
    time.sleep(0.2)
    events = [e for e in server.events() if e.get("event") == "request"]
    assert events, server.log()
    event = events[-1]
    assert (event["method"], event["path"], event["status"]) == ("GET", "/sleep", 200)
    assert event["query"] == "s=0.01"
    assert event["duration_ms"] >= 10
    assert event["pid"] == server.pid


def test_access_log_off(serve_app: Any) -> None:
    """access_log=False: no request events."""
    server = serve_app(strategy="dev", access_log=False)
    get(server.url, "/")
    time.sleep(0.2)
    assert not [e for e in server.events() if e.get("event") == "request"]


def test_startup_event(serve_app: Any) -> None:
    """The serving event states strategy, URL, capacity and pid."""
    server = serve_app(strategy="processes", workers=2)
    event = next(e for e in server.events() if e.get("event") == "serving")
    assert event["strategy"] == "processes"
    assert event["url"] == server.url
    assert event["capacity"] == 2
    assert event["pid"] == server.pid


@pytest.mark.parametrize("strategy", ["dev", "sync"])
def test_reload_picks_up_code_changes(serve_app: Any, tmp_path: Any, strategy: str) -> None:
    """reload=True: editing the app's module restarts the server with the new code."""
    module = tmp_path / "reloadme.py"
    module.write_text(_RELOAD_APP.format(answer="one"))
    options = {"workers": 1} if strategy == "sync" else {}
    server = serve_app("reloadme:app", strategy=strategy, reload=True, cwd=tmp_path, **options)
    assert get(server.url, "/") == (200, b"one")
    time.sleep(1.1)  # past the file's mtime granularity
    module.write_text(_RELOAD_APP.format(answer="two"))
    deadline = time.monotonic() + 20
    body = b""
    while time.monotonic() < deadline and body != b"two":
        with contextlib.suppress(OSError):
            body = get(server.url, "/", timeout=2)[1]
        time.sleep(0.2)
    assert body == b"two"


_RELOAD_APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{answer}"]
"""


@pytest.mark.parametrize("strategy", ["dev", "threaded", "processes"])
def test_ctrl_c_to_every_process_drains(serve_app: Any, strategy: str) -> None:
    """SIGINT to the whole process group (Ctrl+C) lets the request in flight finish."""
    server = serve_app(strategy=strategy)
    assert_drains(server, signal.SIGINT, whole_group=True)
