"""Graceful drain under load: every request a server accepted gets its full response.

Clients keep requests in flight back to back, each on a fresh connection; SIGTERM
(or Ctrl+C, SIGINT to the whole process group) arrives in the middle. A request
is *accepted* once its connection is established; it must then complete. Clients
whose connection is refused may retry elsewhere: that is the designed outcome for
everything that arrives after the stop. DESIGN §4 measured bare gunicorn resetting
the requests queued in the listen backlog (sync 8, gthread 7); servekit loses none.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from servekit import resolve
from servekit.sockets import bind_listener, close_gate, has_queued
from tests.conftest import ROOT, Load, children_of

pytestmark = [pytest.mark.server, pytest.mark.reliability]

#: small configs (two workers where there are workers), and clients at capacity 1x
CONFIGS: dict[str, dict[str, Any]] = {
    "dev": {},
    "threaded": {},
    "processes": {"workers": 2},
    "sync": {"workers": 2},
    "gthread": {"workers": 2, "threads": 3},
    "gevent": {"workers": 2, "worker_connections": 5},
    "eventlet": {"workers": 2, "worker_connections": 5},
    "tornado": {"workers": 2, "threads": 3},
}
STRATEGIES = list(CONFIGS)
GUNICORN = ["sync", "gthread", "gevent", "eventlet", "tornado"]
#: clients for a strategy without a fixed capacity (threaded)
UNBOUNDED_CLIENTS = 8
GRACEFUL_TIMEOUT = 20
REQUEST = "/sleep?s=0.2"


def capacity(strategy: str) -> int:
    """The capacity servekit states for the strategy's test config."""
    stated = resolve(None, strategy, environ={}, **CONFIGS[strategy]).capacity
    return UNBOUNDED_CLIENTS if stated is None else stated


def stop_under_load(
    serve_app: Any, strategy: str, clients: int, how: str = "term"
) -> tuple[Any, int, float]:
    """Serve, load with ``clients``, stop; return the load's result, exit status, stop time."""
    server = serve_app(
        strategy=strategy,
        access_log=False,
        graceful_timeout=GRACEFUL_TIMEOUT,
        **CONFIGS[strategy],
    )
    with Load(server.url, clients, REQUEST) as load:
        load.wait_for(completed=2 * clients)  # every client has been served: steady state
        load.stopping()
        started = time.monotonic()
        if how == "ctrl-c":
            # What a terminal's Ctrl+C does: SIGINT to every process of the group.
            os.killpg(server.pid, signal.SIGINT)
            server.process.wait(GRACEFUL_TIMEOUT + 30)
        code = server.stop(signal.SIGTERM if how == "term" else signal.SIGINT)
        took = time.monotonic() - started
        result = load.join()
    assert "graceful timeout" not in server.log().lower()
    return result, code, took


def assert_nothing_lost(result: Any, code: int, took: float, clients: int) -> None:
    assert code == 0
    assert result.lost == 0, result.losses
    assert result.rejected == 0, result.statuses
    assert result.unanswered == 0
    # No refusal before the stop; after it every client ends at its first refusal.
    assert result.refused == clients
    assert result.completed >= 2 * clients
    assert took < GRACEFUL_TIMEOUT


@pytest.mark.parametrize("factor", [1, 2])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sigterm_under_load_loses_no_accepted_request(
    serve_app: Any, strategy: str, factor: int
) -> None:
    """SIGTERM with capacity x factor clients busy: all accepted complete, exit 0 in time.

    At 2x capacity about half the clients wait in the listen backlog at any time:
    those are the requests bare gunicorn reset.
    """
    clients = factor * capacity(strategy)
    result, code, took = stop_under_load(serve_app, strategy, clients)
    result.row(f"SIGTERM {strategy} clients={clients}")
    assert_nothing_lost(result, code, took, clients)


@pytest.mark.parametrize("strategy", ["threaded", "sync", "gthread", "gevent"])
def test_ctrl_c_under_load_loses_no_accepted_request(serve_app: Any, strategy: str) -> None:
    """SIGINT to the whole process group (workers too, before the master announces
    the stop) drains like SIGTERM: nothing accepted is lost."""
    clients = 2 * capacity(strategy)
    result, code, took = stop_under_load(serve_app, strategy, clients, how="ctrl-c")
    result.row(f"Ctrl+C {strategy} clients={clients}")
    assert_nothing_lost(result, code, took, clients)


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", ["processes", "eventlet", "tornado", "dev"])
def test_ctrl_c_under_load_other_strategies(serve_app: Any, strategy: str) -> None:
    """The Ctrl+C drain for the strategies the default run leaves out."""
    clients = 2 * capacity(strategy)
    result, code, took = stop_under_load(serve_app, strategy, clients, how="ctrl-c")
    result.row(f"Ctrl+C {strategy} clients={clients}")
    assert_nothing_lost(result, code, took, clients)


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sigterm_under_heavy_load(serve_app: Any, strategy: str) -> None:
    """4x capacity clients, repeated three times per strategy: still nothing lost."""
    clients = 4 * capacity(strategy)
    for round_ in range(3):
        result, code, took = stop_under_load(serve_app, strategy, clients)
        result.row(f"SIGTERM {strategy} clients={clients} round={round_}")
        assert_nothing_lost(result, code, took, clients)


def slow_post_fork(server: Any, worker: Any) -> None:
    """gunicorn ``post_fork`` hook: hold the worker between fork and its signal handlers."""
    time.sleep(1.0)


@pytest.mark.parametrize("strategy", ["sync", "gevent"])
def test_sigterm_while_a_worker_boots_stops_promptly(serve_app: Any, strategy: str) -> None:
    """A worker told to stop before it installed its own signal handlers still stops:
    the server exits 0 at once, not after graceful_timeout and a SIGKILL."""
    hook = '{"post_fork": "tests.test_reliability_drain.slow_post_fork"}'
    server = serve_app(
        strategy=strategy,
        workers=1,
        gunicorn=hook,
        graceful_timeout=GRACEFUL_TIMEOUT,
        cwd=ROOT,
    )
    # Replace the worker: its successor sleeps in post_fork when SIGTERM arrives.
    (worker,) = children_of(server.pid)
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = children_of(server.pid)
        if now and worker not in now:
            break
        time.sleep(0.02)
    started = time.monotonic()
    code = server.stop(signal.SIGTERM)
    assert code == 0
    assert time.monotonic() - started < GRACEFUL_TIMEOUT / 2


@pytest.mark.parametrize("strategy", ["threaded", "processes", "sync", "gthread", "gevent"])
def test_sigterm_under_load_on_a_unix_socket(serve_app: Any, strategy: str, tmp_path: Path) -> None:
    """On a unix socket the gate is the socket file: removed at the stop (new clients
    find no socket), while everything already queued is served."""
    clients = 2 * capacity(strategy)
    path = tmp_path / "s.sock"
    server = serve_app(
        strategy=strategy,
        bind=f"unix:{path}",
        access_log=False,
        graceful_timeout=GRACEFUL_TIMEOUT,
        **CONFIGS[strategy],
    )
    with Load(server.url, clients, REQUEST) as load:
        load.wait_for(completed=2 * clients)
        load.stopping()
        code = server.stop(signal.SIGTERM)
        result = load.join()
    result.row(f"SIGTERM {strategy} unix socket clients={clients}")
    assert_nothing_lost(result, code, 0.0, clients)
    assert not path.exists()


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_gate_keeps_the_queue_and_refuses_newcomers(family: int, host: str) -> None:
    """close_gate: a connection queued before it is still accepted, with its request;
    one attempted after it never queues, and is refused once the listener closes."""
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    early = socket.create_connection((host, port), timeout=10)
    early.sendall(b"request")
    assert close_gate(listener)
    outcome: list[str] = []

    def late() -> None:
        try:
            socket.create_connection((host, port), timeout=10).close()
            outcome.append("connected")
        except ConnectionRefusedError:
            outcome.append("refused")

    latecomer = threading.Thread(target=late)
    latecomer.start()
    try:
        conn, _ = listener.accept()
        assert conn.recv(100) == b"request"
        conn.close()
        time.sleep(0.3)  # the latecomer's SYN has arrived: dropped, not queued
        assert not has_queued(listener)
    finally:
        listener.close()
        early.close()
    latecomer.join(15)
    assert outcome == ["refused"]


def test_unix_gate_removes_only_its_own_socket_file(tmp_path: Path) -> None:
    """On a unix socket the gate is the file, removed only if this process made it."""
    plan = resolve(None, "dev", environ={}, bind=f"unix:{tmp_path / 's.sock'}")
    listener = bind_listener(plan)
    queued = socket.socket(socket.AF_UNIX)
    queued.connect(str(tmp_path / "s.sock"))
    assert close_gate(listener)
    assert not (tmp_path / "s.sock").exists()
    conn, _ = listener.accept()  # what was queued is still there
    conn.close()
    listener.close()
    queued.close()
    foreign = socket.socket(socket.AF_UNIX)
    foreign.bind(str(tmp_path / "other.sock"))
    foreign.listen(1)
    assert not close_gate(foreign)  # not servekit's: left alone
    assert (tmp_path / "other.sock").exists()
    foreign.close()
