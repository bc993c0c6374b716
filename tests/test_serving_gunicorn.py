"""Real embedded gunicorn with every worker class: capacity as stated, drain, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ROOT,
    assert_drains,
    burst,
    children_of,
    get,
    read_response,
    run_cli,
    start_logged,
    stop_logged,
)

pytestmark = pytest.mark.server

SMALL = {
    "sync": {"workers": 2},
    "gthread": {"workers": 2, "threads": 3},
    "gevent": {"workers": 2, "worker_connections": 5},
    "eventlet": {"workers": 2, "worker_connections": 5},
    "tornado": {"workers": 2, "threads": 3},
}
STRATEGIES = list(SMALL)


def stated_capacity(strategy: str, options: dict[str, Any]) -> int:
    """The capacity `servekit explain` states for this config."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    proc = run_cli("explain", "--strategy", strategy, "--json", *flags)
    capacity: int = json.loads(proc.stdout)["capacity"]
    return capacity


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_burst_of_twice_capacity_takes_two_rounds(serve_app: Any, strategy: str) -> None:
    """2 x capacity requests of 0.3 s take about two rounds: not one, not four."""
    capacity = stated_capacity(strategy, SMALL[strategy])
    assert (
        capacity == {"sync": 2, "gthread": 6, "gevent": 10, "eventlet": 10, "tornado": 6}[strategy]
    )
    server = serve_app(strategy=strategy, **SMALL[strategy])
    burst(server.url, 2, "/")  # warm up both workers
    elapsed, statuses = burst(server.url, 2 * capacity, "/sleep?s=0.3")
    assert statuses == [200] * (2 * capacity)
    assert 0.55 <= elapsed < 0.85, f"{elapsed:.2f}s for {2 * capacity} requests"


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_request_in_flight(serve_app: Any, strategy: str, sig: int) -> None:
    """SIGTERM/SIGINT during a 1.5 s request: 200 with the full body, exit status 0."""
    server = serve_app(strategy=strategy, **SMALL[strategy])
    assert_drains(server, sig)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ctrl_c_to_every_process_drains(serve_app: Any, strategy: str) -> None:
    """SIGINT to the whole process group (Ctrl+C in a terminal) drains like SIGTERM."""
    server = serve_app(strategy=strategy, **SMALL[strategy])
    assert_drains(server, signal.SIGINT, whole_group=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_killed_worker_is_replaced(serve_app: Any, strategy: str) -> None:
    """SIGKILL one worker: within a few seconds requests succeed again from a new worker."""
    server = serve_app(strategy=strategy, **SMALL[strategy])
    workers = set(children_of(server.pid))
    assert len(workers) == 2
    victim = int(get(server.url, "/pid")[1])
    assert victim in workers
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = set(children_of(server.pid))
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    assert victim not in set(children_of(server.pid))
    assert len(children_of(server.pid)) == 2
    statuses = [get(server.url, "/", timeout=5)[0] for _ in range(10)]
    assert statuses == [200] * 10


def test_port_env_does_not_change_bind(serve_app: Any) -> None:
    """PORT=9999 in the environment loses to the port servekit resolved, and host stays loopback."""
    server = serve_app(strategy="sync", workers=1, env={"PORT": "9999"})
    assert ":9999" not in server.url
    assert server.url.startswith("http://127.0.0.1:")
    assert get(server.url, "/")[0] == 200
    assert "0.0.0.0" not in server.log()


def test_web_concurrency_does_not_override(serve_app: Any) -> None:
    """WEB_CONCURRENCY read by gunicorn at import does not beat workers=2."""
    server = serve_app(strategy="sync", workers=2, env={"WEB_CONCURRENCY": "5"})
    assert len(children_of(server.pid)) == 2


def test_two_servers_at_once(serve_app: Any) -> None:
    """Two servekit gunicorns on one machine both serve (no shared control socket)."""
    first = serve_app(strategy="gthread", workers=1, threads=2)
    second = serve_app(strategy="sync", workers=1)
    assert first.url != second.url
    assert get(first.url, "/")[0] == 200
    assert get(second.url, "/")[0] == 200
    assert "ctl" not in first.log() + second.log()


def test_read_only_home(serve_app: Any, tmp_path: Path) -> None:
    """A read-only HOME (and no XDG_RUNTIME_DIR) does not break start-up."""
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
    server = serve_app(strategy="sync", workers=1, env=env)
    assert get(server.url, "/")[0] == 200
    assert not (home / ".gunicorn").exists()


@pytest.mark.parametrize("strategy", ["gevent", "eventlet"])
def test_import_string_is_imported_after_patch(serve_app: Any, strategy: str) -> None:
    """An app given as 'module:app' is imported in the worker after the monkey-patch."""
    server = serve_app(strategy=strategy, workers=1, worker_connections=10)
    status, body = get(server.url, "/patched")
    assert status == 200
    assert json.loads(body) == {"at_import": True, "now": True}


def test_json_access_log_fields(serve_app: Any) -> None:
    """The access log is one JSON object per request with the documented fields."""
    server = serve_app(strategy="gthread", workers=1, threads=2)
    get(server.url, "/big?x=1")
    time.sleep(0.3)
    lines = [line for line in server.log().splitlines() if '"request"' in line]
    assert lines, server.log()
    event = json.loads(lines[-1])
    assert event["event"] == "request"
    assert (event["method"], event["path"], event["query"], event["status"]) == (
        "GET",
        "/big",
        "x=1",
        200,
    )
    assert event["bytes"] == 100_000
    assert event["duration_ms"] >= 0
    assert event["remote"] == "127.0.0.1"
    assert event["pid"] in children_of(server.pid)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_access_log_off(serve_app: Any, strategy: str) -> None:
    """access_log=False: no request events from any worker class."""
    server = serve_app(strategy=strategy, workers=1, access_log=False)
    for _ in range(3):
        assert get(server.url, "/")[0] == 200
    time.sleep(0.3)
    assert not [e for e in server.events() if e.get("event") == "request"]


@pytest.mark.parametrize("strategy", ["sync", "tornado", "eventlet", "gevent"])
def test_access_log_on(serve_app: Any, strategy: str) -> None:
    """Every worker class writes the structured request event."""
    server = serve_app(strategy=strategy, workers=1)
    get(server.url, "/?a=b")
    time.sleep(0.3)
    events = [e for e in server.events() if e.get("event") == "request"]
    assert events, server.log()
    assert (events[-1]["path"], events[-1]["status"], events[-1]["query"]) == ("/", 200, "a=b")


def _script(
    strategy: str, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen[bytes], Path]:
    """Run tests/apps/script.py (serve(app) then code after it) with SERVEKIT_STRATEGY."""
    log = tmp_path / "script.log"
    env = {"SERVEKIT_STRATEGY": strategy, "AFTER_SERVE_MARKER": str(tmp_path / "after.txt")}
    env.update(extra_env or {})
    url, proc = start_logged(
        [sys.executable, str(ROOT / "tests" / "apps" / "script.py")], log, env=env
    )
    return url, proc, log


@pytest.mark.parametrize("strategy", ["sync", "gevent", "threaded"])
def test_code_after_serve_runs_once_in_main_process(tmp_path: Path, strategy: str) -> None:
    """The code after serve() in a script runs once, in the main process, never in workers."""
    extra = {"SERVEKIT_WORKERS": "2"} if strategy != "threaded" else None
    url, proc, _ = _script(strategy, tmp_path, extra)
    try:
        assert get(url, "/")[0] == 200
        workers = children_of(proc.pid)
    finally:
        code = stop_logged(proc)
    assert code == 0
    assert (tmp_path / "after.txt").read_text().split() == [str(proc.pid)]
    assert strategy == "threaded" or len(workers) == 2


def test_app_object_under_gevent_warns_and_serves(tmp_path: Path) -> None:
    """An app object with gevent logs the import-order warning, and still serves."""
    url, proc, log = _script("gevent", tmp_path, {"SERVEKIT_WORKERS": "1"})
    try:
        assert get(url, "/")[0] == 200
    finally:
        stop_logged(proc)
    text = log.read_text()
    assert "imported before gevent monkey-patches" in text
    assert "import string" in text


def test_gunicorn_escape_hatch_applies(serve_app: Any) -> None:
    """A checked gunicorn setting from the escape hatch reaches gunicorn."""
    server = serve_app(strategy="sync", workers=1, gunicorn='{"limit_request_line": 64}')
    assert get(server.url, "/")[0] == 200
    assert get(server.url, "/" + "x" * 200)[0] == 414  # Request-URI Too Long


def test_gthread_keepalive_holds_no_thread(serve_app: Any) -> None:
    """With keepalive, gthread keeps connections open (3 x capacity of them, idle) and a
    new client is still served at once; a kept connection serves again, and is closed
    after keepalive seconds of silence. Without the option each response closes."""
    import http.client

    server = serve_app(strategy="gthread", workers=1, threads=2, keepalive=2)
    port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
    kept = []
    for _ in range(6):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert response.getheader("Connection") != "close"
        kept.append(conn)
    fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=1.5)
    fresh.request("GET", "/")
    assert fresh.getresponse().status == 200  # within 1.5 s, while 6 > 2 threads are kept
    fresh.close()
    kept[0].request("GET", "/")
    again = kept[0].getresponse()
    again.read()
    assert again.status == 200
    idle = kept[1].sock
    assert idle is not None
    idle.settimeout(5)
    started = time.monotonic()
    assert idle.recv(10) == b""  # closed by the server after keepalive
    assert time.monotonic() - started < 4
    for conn in kept:
        conn.close()
    plain = serve_app(strategy="gthread", workers=1, threads=2)
    conn = http.client.HTTPConnection("127.0.0.1", int(plain.url.rsplit(":", 1)[1].rstrip("/")))
    conn.request("GET", "/")
    closing = conn.getresponse()
    closing.read()
    assert closing.getheader("Connection") == "close"
    conn.close()


def test_gthread_recycling_does_not_wait_on_idle_connections(serve_app: Any) -> None:
    """A gthread worker leaving for max_requests gives a connection that sent nothing a
    short linger (2 s), not its whole header_timeout (20 s here): the replacement serves
    the next request well before that deadline."""
    import socket

    server = serve_app(strategy="gthread", workers=1, threads=2, max_requests=3, header_timeout=20)

    def pid() -> tuple[bytes, float]:
        started = time.monotonic()
        status, body = get(server.url, "/pid", timeout=30)
        assert status == 200
        return body, time.monotonic() - started

    first, _ = pid()
    for _ in range(6):  # until a fresh worker serves, with its whole max_requests ahead
        fresh, _ = pid()
        if fresh != first:
            break
    assert fresh != first
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as idle:
        time.sleep(0.2)  # accepted by the fresh worker, waiting for a head on its poller
        for _ in range(6):
            now, waited = pid()
            if now != fresh:
                break
        assert now != fresh
        assert waited < 10, waited  # before: the worker stayed until the idle one's deadline
        idle.settimeout(1)
        assert idle.recv(10) == b""  # closed by the worker that left


def test_gthread_kept_alive_head_has_the_head_deadline(serve_app: Any) -> None:
    """On a kept-alive gthread connection, keepalive limits the silence before the next
    request; once its head has begun, header_timeout (from the previous response) does:
    a head trickled over 3 s is served with keepalive=2 and header_timeout=5."""
    import socket

    server = serve_app(strategy="gthread", workers=1, threads=2, keepalive=2, header_timeout=5)
    port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200"), first
        time.sleep(0.5)
        for byte in request:
            sock.send(bytes([byte]))
            time.sleep(3.0 / len(request))
        second = read_response(sock)
    assert second.startswith(b"HTTP/1.1 200"), second


def _port(server: Any) -> int:
    return int(server.url.rsplit(":", 1)[1].rstrip("/"))


def _served_within(server: Any, seconds: float) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", _port(server), timeout=seconds)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def test_gthread_heads_that_take_no_thread(serve_app: Any) -> None:
    """Connections that hold no thread on gthread (2 threads): partial heads after one
    empty line, clients that keep their end open after a closing response, and a
    pipelined partial second head (timed as a head: 408 at header_timeout, even with no
    body rate). Meanwhile a good client is served at once, every time."""
    import socket

    server = serve_app(
        strategy="gthread", workers=1, threads=2, keepalive=2, header_timeout=2, body_min_rate=0
    )
    port = _port(server)
    held = []
    try:
        for _ in range(3):  # one empty line, then a head that stops
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"\r\nGET / HTTP/1.1\r\nHo")
            held.append(sock)
        time.sleep(0.3)
        assert _served_within(server, 1.0)
        for _ in range(3):  # a closing response, and the client never closes its end
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            held.append(sock)
        time.sleep(0.3)
        assert _served_within(server, 1.0)
        assert _served_within(server, 1.0)
        pipelined = socket.create_connection(("127.0.0.1", port), timeout=6)
        held.append(pipelined)
        pipelined.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo")
        started = time.monotonic()
        reply = b""
        while chunk := pipelined.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in reply, reply[-200:]
        assert time.monotonic() - started < 4.5
        assert _served_within(server, 1.0)
    finally:
        for sock in held:
            sock.close()


def test_gthread_stop_right_after_an_accept_does_not_spin(serve_app: Any) -> None:
    """SIGTERM 10 ms after a connection that sent half a head: the worker waits for that
    head without spinning (its CPU time over the stop stays small)."""
    import socket

    server = serve_app(strategy="gthread", workers=1, threads=2, header_timeout=3)
    (worker,) = children_of(server.pid)
    with socket.create_connection(("127.0.0.1", _port(server))) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        time.sleep(0.01)
        before = _cpu_seconds(worker)
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(2.0)
        spent = _cpu_seconds(worker) - before if _alive(worker) else 0.0
    assert spent < 0.5, spent  # a busy loop takes about a CPU second per second
    server.stop(signal.SIGTERM)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
