"""Every signal does what the README's signal table says, on every strategy family."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from servekit.testing import options_for
from tests.conftest import assert_drains, children_of, get

pytestmark = pytest.mark.server

GUNICORN = ["sync", "gthread", "gevent", "eventlet", "tornado"]
WERKZEUG = ["dev", "threaded", "processes"]


def _wait_for(condition: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("strategy", GUNICORN)
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_hup_then_stop_still_drains(serve_app: Any, strategy: str, second: int) -> None:
    """After SIGHUP reloads the workers, SIGINT and SIGTERM still drain: the request in
    flight gets its 200 and the exit status is 0."""
    server = serve_app(strategy=strategy, **options_for(strategy, workers=2))
    old = set(children_of(server.pid))
    os.kill(server.pid, signal.SIGHUP)
    assert _wait_for(lambda: len(set(children_of(server.pid)) - old) == 2), server.log()
    assert _wait_for(lambda: not (old & set(children_of(server.pid)))), server.log()
    assert get(server.url, "/")[0] == 200
    assert_drains(server, second)


@pytest.mark.parametrize("strategy", ["sync", "gevent", "tornado"])
def test_usr2_is_refused_with_a_log_line(serve_app: Any, strategy: str) -> None:
    """SIGUSR2 (gunicorn's binary upgrade) is logged and ignored: no second master, the
    server serves on and still drains."""
    server = serve_app(strategy=strategy, **options_for(strategy, workers=1))
    before = children_of(server.pid)
    os.kill(server.pid, signal.SIGUSR2)
    assert _wait_for(lambda: "SIGUSR2 (binary upgrade) is not supported" in server.log())
    time.sleep(0.5)
    assert children_of(server.pid) == before
    assert get(server.url, "/")[0] == 200
    assert_drains(server, signal.SIGTERM)


@pytest.mark.parametrize("strategy", WERKZEUG)
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2], ids=["HUP", "USR1", "USR2"])
def test_werkzeug_ignores_hup_and_usr_with_requests_in_flight(
    serve_app: Any, strategy: str, sig: int
) -> None:
    """HUP, USR1 and USR2 do not end a werkzeug server: the request in flight finishes,
    the server serves on, and the log says the signal was ignored."""
    server = serve_app(strategy=strategy, **options_for(strategy, workers=2))
    reply: dict[str, Any] = {}
    client = threading.Thread(target=lambda: reply.update(r=get(server.url, "/sleep?s=1")))
    client.start()
    time.sleep(0.3)
    os.kill(server.pid, sig)
    client.join(10)
    assert reply["r"][0] == 200
    assert server.process.poll() is None
    assert get(server.url, "/")[0] == 200
    assert any(
        e.get("event") == "signal ignored" and e.get("signal") == signal.Signals(sig).name
        for e in server.events()
    ), server.log()


@pytest.mark.parametrize("strategy", WERKZEUG)
def test_werkzeug_quit_drains(serve_app: Any, strategy: str) -> None:
    """SIGQUIT drains a werkzeug server like SIGTERM."""
    server = serve_app(strategy=strategy, **options_for(strategy, workers=2))
    assert_drains(server, signal.SIGQUIT)
