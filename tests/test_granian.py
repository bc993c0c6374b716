"""The granian strategy: real granian servers on loopback, held to servekit's promises."""

from __future__ import annotations

import http.client
import importlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from servekit import resolve
from servekit.backends.granian import patches
from servekit.testing import running
from tests.conftest import (
    ROOT,
    Load,
    assert_drains,
    burst,
    children_of,
    free_port,
    get,
    port_is_free,
    run_cli,
)

SMALL = {"workers": 2, "threads": 2}
GRACEFUL_TIMEOUT = 20
ENV_APP = """
import json, os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    keys = sorted(k for k in environ if k.isupper())
    return [json.dumps({"keys": keys, "pid": os.getpid()}).encode()]
"""


# -- the config ----------------------------------------------------------------------------


def test_explain_states_capacity_and_server() -> None:
    """explain --json: server granian, no worker class, capacity workers x threads."""
    proc = run_cli(
        "explain", "tests.apps.slow:app", "-k", "granian", "-w", "2", "--threads", "3", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["strategy"], data["server"], data["worker_class"]) == ("granian", "granian", None)
    assert data["capacity"] == 6 and data["capacity_text"] == "2 workers x 3 threads"
    assert data["options"]["keepalive"] == {"value": 0, "source": "default"}
    assert "reload" not in data["options"] and "timeout" not in data["options"]


def test_defaults_come_from_usable_cpus() -> None:
    """Unset, workers is the usable CPUs and threads 4: capacity 4 x CPUs."""
    plan = resolve(None, "granian", environ={}, cpus=3)
    assert (plan.config.workers, plan.config.threads, plan.capacity) == (3, 4, 12)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "flags",
    [
        ["--timeout", "5"],
        ["--max-requests", "10"],
        ["--max-requests-jitter", "3"],
        ["--worker-connections", "9"],
        ["--body-min-rate", "100"],
        ["--gunicorn", "{}"],
        ["--reload"],
        ["--debug"],
    ],
)
def test_options_granian_cannot_take_are_refused(flags: list[str]) -> None:
    """An option granian has no equivalent for is an exit 2 naming it, never dropped."""
    proc = run_cli("run", "tests.apps.slow:app", "--strategy", "granian", *flags)
    option = flags[0][2:].replace("-", "_")
    assert proc.returncode == 2, proc.stderr
    assert f"option '{option}'" in proc.stderr
    assert "does not apply to strategy 'granian'" in proc.stderr


def test_refused_option_from_the_environment_names_the_variable() -> None:
    """SERVEKIT_TIMEOUT under granian: exit 2, the variable named."""
    proc = run_cli("explain", env={"SERVEKIT_STRATEGY": "granian", "SERVEKIT_TIMEOUT": "5"})
    assert proc.returncode == 2 and "SERVEKIT_TIMEOUT" in proc.stderr


def test_private_names_servekit_relies_on_exist() -> None:
    """Every private granian name servekit overrides or replaces is there, in the pinned range."""
    import granian
    from granian._granian import SocketHolder
    from granian.server import Server

    major, minor = (int(part) for part in granian.__version__.split(".")[:2])
    assert (major, minor) == (2, 8), granian.__version__
    for dotted, attr in patches.PRIVATE_NAMES:
        owner: Any
        try:
            owner = importlib.import_module(dotted)
        except ModuleNotFoundError:
            module_name, _, class_name = dotted.rpartition(".")
            owner = getattr(importlib.import_module(module_name), class_name)
        assert hasattr(owner, attr), f"{dotted}.{attr}"
    server = Server("app:app", interface="wsgi")
    for attr in patches.INSTANCE_ATTRIBUTES:
        assert hasattr(server, attr), attr
    with socket.socket() as sock:
        holder = SocketHolder(os.dup(sock.fileno()), False, 128)
        assert holder.is_uds() is False
        os.close(holder.get_fd())


def test_explain_imports_no_granian() -> None:
    """Resolving and explaining a granian plan never imports granian."""
    code = (
        "import sys, servekit\n"
        "servekit.resolve(None, 'granian', environ={})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'granian'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- serving -------------------------------------------------------------------------------


@pytest.mark.server
def test_flask_app_is_served(serve_app: Any) -> None:
    """examples/flask_app.py under granian: its routes answer."""
    server = serve_app("examples.flask_app:app", "granian", **SMALL)
    assert get(server.url, "/") == (200, b"hello from flask\n")
    assert get(server.url, "/sleep?s=0.01") == (200, b"slept 0.01\n")
    assert get(server.url, "/nope")[0] == 404


@pytest.mark.server
def test_django_example_is_served(serve_app: Any) -> None:
    """examples/djangosite's wsgi.py under granian."""
    server = serve_app("examples.djangosite.wsgi:application", "granian", **SMALL)
    assert get(server.url, "/") == (200, b"hello from django\n")
    assert get(server.url, "/missing")[0] == 404


@pytest.mark.server
def test_app_object_is_served_from_a_fork(tmp_path: Path) -> None:
    """An app object (not an import string) is inherited by the workers."""
    from tests.apps.slow import app

    with running(app, "granian", log_dir=tmp_path, **SMALL) as server:
        assert get(server.url, "/") == (200, b"ok")


@pytest.mark.server
@pytest.mark.parametrize(("workers", "threads"), [(2, 2), (1, 3)])
def test_burst_of_twice_capacity_takes_two_rounds(
    serve_app: Any, workers: int, threads: int
) -> None:
    """2 x capacity requests of 0.3 s take two rounds: not one, not four."""
    server = serve_app(strategy="granian", workers=workers, threads=threads)
    capacity = workers * threads
    burst(server.url, 2, "/")
    elapsed, statuses = burst(server.url, 2 * capacity, "/sleep?s=0.3")
    assert statuses == [200] * (2 * capacity)
    assert 0.55 <= elapsed < 0.85, f"{elapsed:.2f}s for {2 * capacity} requests"


@pytest.mark.server
def test_keepalive_off_by_default_and_on_when_given(serve_app: Any) -> None:
    """By default each response closes its connection; with keepalive a connection serves two."""
    closing = serve_app(strategy="granian", workers=1, threads=2)
    kept = serve_app(strategy="granian", workers=1, threads=2, keepalive=5)
    for server, reused in ((closing, False), (kept, True)):
        port = int(server.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        first = conn.getresponse()
        first.read()
        assert (first.getheader("Connection") == "close") is not reused
        if reused:
            sock = conn.sock
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"ok" and conn.sock is sock
        conn.close()


def _trickled_head_lasts(port: int) -> float:
    """Seconds until the server closes a connection whose head comes a byte per 0.1 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(0.1)
        started = time.monotonic()
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200:
            try:
                sock.send(bytes([byte]))
                if sock.recv(100) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        return time.monotonic() - started


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
        return reply


@pytest.mark.server
def test_header_timeout_and_max_body_size(serve_app: Any) -> None:
    """header_timeout is granian's head deadline (1 s ends a trickled head far sooner than
    3 s); a Content-Length over max_body_size is a 413 before the app runs, a chunked body
    past it a 413; a body within it is served."""
    short = serve_app(
        strategy="granian", workers=1, threads=2, header_timeout=1, max_body_size=1000
    )
    longer = serve_app(strategy="granian", workers=1, threads=2, header_timeout=3)
    port = int(short.url.rsplit(":", 1)[1])
    quick, slow = (
        _trickled_head_lasts(port),
        _trickled_head_lasts(int(longer.url.rsplit(":", 1)[1])),
    )
    assert 0.5 < quick < 2.5 and slow > 1.8 * quick, (quick, slow)
    declared = _exchange(port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    chunked = _exchange(
        port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk * 3
        + b"0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    small = _exchange(
        port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + b"y" * 10
    )
    assert small.startswith(b"HTTP/1.1 200") and small.endswith(b"10"), small[:300]
    log = short.log()
    assert log.count("(413)") == 2, log[-2000:]


@pytest.mark.server
def test_environ_carries_no_process_environment(serve_app: Any, tmp_path: Path) -> None:
    """A deploy-time HTTP_* variable or secret in the environment is not in any request's environ."""
    (tmp_path / "envapp.py").write_text(ENV_APP)
    server = serve_app(
        "envapp:app",
        "granian",
        chdir=str(tmp_path),
        env={"HTTP_X_LEAK": "1", "DATABASE_PASSWORD": "hunter2"},
        **SMALL,
    )
    status, body = get(server.url, "/")
    keys = json.loads(body)["keys"]
    assert status == 200
    assert "HTTP_X_LEAK" not in keys and "DATABASE_PASSWORD" not in keys and "PATH" not in keys


@pytest.mark.server
def test_access_log_is_json_request_events(serve_app: Any) -> None:
    """One JSON request event per request, with servekit's access fields and the extra header."""
    server = serve_app(
        strategy="granian", log_format="json", access_log_fields="x-request-id", **SMALL
    )
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "GET",
        "/sleep?s=0.05",
        headers={"User-Agent": "ua/1", "Referer": "r", "X-Request-Id": "id7"},
    )
    assert conn.getresponse().status == 200
    conn.close()
    time.sleep(0.3)
    events = server.events()
    assert sum(e.get("event") == "serving" for e in events) == 1
    (request,) = [e for e in events if e.get("event") == "request" and e["path"] == "/sleep"]
    assert request["method"] == "GET" and request["path"] == "/sleep"
    assert request["query"] == "s=0.05" and request["status"] == 200
    assert request["duration_ms"] >= 50 and request["pid"] in children_of(server.pid)
    assert request["remote"] == "127.0.0.1" and request["client"] == "127.0.0.1"
    assert (request["protocol"], request["user_agent"], request["referer"]) == (
        "HTTP/1.1",
        "ua/1",
        "r",
    )
    assert request["x-request-id"] == "id7"
    assert any(e.get("logger") == "granian" for e in events)  # granian's own lines too


@pytest.mark.server
def test_tls_with_a_tls_1_2_client(serve_app: Any, tls_pair: tuple[Path, Path]) -> None:
    """certfile/keyfile serve https, and a TLS 1.2 client is accepted (granian's default: 1.3)."""
    cert, key = tls_pair
    server = serve_app(strategy="granian", certfile=str(cert), keyfile=str(key), **SMALL)
    assert server.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with urllib.request.urlopen(server.url + "/", context=context, timeout=10) as response:
        assert response.read() == b"ok"


@pytest.mark.server
def test_metrics_count_requests_and_workers(serve_app: Any) -> None:
    """The metrics listener reports granian's capacity, workers and requests."""
    port = free_port()
    server = serve_app(strategy="granian", metrics=f"127.0.0.1:{port}", **SMALL)
    for _ in range(3):
        assert get(server.url, "/")[0] == 200
    text = get(f"http://127.0.0.1:{port}", "/metrics")[1].decode()
    assert 'servekit_capacity{strategy="granian",worker_class=""} 4' in text
    assert 'servekit_workers{strategy="granian",worker_class=""} 2' in text
    served = next(line for line in text.splitlines() if 'status_class="2xx"' in line)
    assert int(served.rsplit(" ", 1)[1]) >= 3  # and the readiness poll's
    assert get(f"http://127.0.0.1:{port}", "/ready")[0] == 200


# -- stopping and crashing -----------------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_request_in_flight(serve_app: Any, sig: int) -> None:
    """SIGTERM/SIGINT during a 1.5 s request: 200 with the full body, exit status 0."""
    assert_drains(serve_app(strategy="granian", **SMALL), sig)


@pytest.mark.server
def test_ctrl_c_to_the_group_drains(serve_app: Any) -> None:
    """Ctrl+C to the whole process group drains too (granian alone could hang a worker)."""
    assert_drains(serve_app(strategy="granian", **SMALL), signal.SIGINT, whole_group=True)


def _stop_under_load(server: Any, clients: int, how: str) -> tuple[Any, int]:
    with Load(server.url, clients, "/sleep?s=0.2") as load:
        load.wait_for(completed=2 * clients)
        load.stopping()
        if how == "ctrl-c":
            os.killpg(server.pid, signal.SIGINT)
            server.process.wait(GRACEFUL_TIMEOUT + 30)
        code = server.stop(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
        result = load.join()
    return result, code


@pytest.mark.server
@pytest.mark.reliability
@pytest.mark.parametrize(
    ("factor", "how", "unix"),
    [(1, "term", False), (2, "term", False), (2, "ctrl-c", False), (2, "term", True)],
)
def test_stop_under_load_loses_no_accepted_request(
    serve_app: Any, tmp_path: Path, factor: int, how: str, unix: bool
) -> None:
    """Clients at 1x/2x capacity, then SIGTERM or Ctrl+C: every accepted request completes, exit 0."""
    options: dict[str, Any] = {"bind": f"unix:{tmp_path / 'g.sock'}"} if unix else {}
    server = serve_app(
        strategy="granian", access_log=False, graceful_timeout=GRACEFUL_TIMEOUT, **SMALL, **options
    )
    clients = factor * 4
    started = time.monotonic()
    result, code = _stop_under_load(server, clients, how)
    result.row(f"granian {how} clients={clients}{' unix' if unix else ''}")
    assert code == 0
    assert result.lost == 0, result.losses
    assert (result.rejected, result.unanswered) == (0, 0)
    assert result.refused == clients and result.completed >= 2 * clients
    assert time.monotonic() - started < GRACEFUL_TIMEOUT + 10
    assert len(result.pids) == 2  # both workers served


@pytest.mark.server
def test_request_beyond_graceful_timeout_is_cut_and_exit_is_prompt(serve_app: Any) -> None:
    """A request longer than graceful_timeout is cut at the deadline; the exit is still 0."""
    server = serve_app(strategy="granian", graceful_timeout=1, **SMALL)
    outcome: dict[str, Any] = {}

    def slow() -> None:
        try:
            outcome["reply"] = get(server.url, "/sleep?s=6")
        except OSError as exc:
            outcome["error"] = exc

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.4)
    started = time.monotonic()
    code = server.stop(signal.SIGTERM)
    took = time.monotonic() - started
    client.join(10)
    assert code == 0 and took < 4, took
    assert "error" in outcome or outcome["reply"][0] != 200
    assert "refused to gracefully stop" in server.log()


@pytest.mark.server
def test_killed_worker_is_replaced(serve_app: Any) -> None:
    """kill -9 of a worker: it is replaced, the server serves on, the restart is counted."""
    port = free_port()
    server = serve_app(strategy="granian", metrics=f"127.0.0.1:{port}", **SMALL)
    until = time.monotonic() + 10  # the first answer may come before the second worker runs
    while len(workers := children_of(server.pid)) < 2 and time.monotonic() < until:
        time.sleep(0.1)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    settled: list[int] = []
    while time.monotonic() < deadline:
        now = children_of(server.pid)
        if len(now) == 2 and workers[0] not in now:
            time.sleep(0.5)  # the same two a moment later: granian has finished respawning
            if sorted(children_of(server.pid)) == sorted(now):
                settled = now
                break
        time.sleep(0.2)
    assert len(settled) == 2 and workers[0] not in settled, children_of(server.pid)
    assert get(server.url, "/")[0] == 200
    # the master counts the restart once it has reaped the worker: allow it a moment
    text = ""
    until = time.monotonic() + 10
    while time.monotonic() < until and 'reason="signal"} 1' not in text:
        text = get(f"http://127.0.0.1:{port}", "/metrics")[1].decode()
        time.sleep(0.1)
    assert 'reason="signal"} 1' in text, text
    assert server.stop(signal.SIGTERM) == 0


@pytest.mark.server
def test_killed_master_takes_its_workers_along(serve_app: Any) -> None:
    """kill -9 of the master: its workers stop too, none serves on as an orphan."""
    server = serve_app(strategy="granian", **SMALL)
    workers = children_of(server.pid)
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [
            pid for pid in workers if Path(f"/proc/{pid}").exists() and _state(pid) not in "ZX"
        ]
        time.sleep(0.1)
    assert not alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


@pytest.mark.server
def test_import_failure_is_one_line_exit_2(tmp_path: Path) -> None:
    """An app that fails to import: one servekit error line, exit 2, the port free."""
    (tmp_path / "brokengr.py").write_text("raise RuntimeError('boom in granian')\n")
    port = free_port()
    argv = [sys.executable, "-m", "servekit", "run", "brokengr:app", "--strategy", "granian"]
    argv += ["-w", "2", "--port", str(port), "--chdir", str(tmp_path)]
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=60, start_new_session=True
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("servekit: error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and errors[0].count("boom in granian") == 1, errors
    # no drain is announced for a stop that only ends the failed boot
    assert '"stopping"' not in proc.stderr and " stopping " not in proc.stderr, proc.stderr
    assert port_is_free(port)
