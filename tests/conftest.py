"""Shared helpers: start real servers, talk HTTP to them, run the CLI."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from servekit.testing import RunningServer, running

ROOT = Path(__file__).resolve().parent.parent
SLOW_APP = "tests.apps.slow:app"


@pytest.fixture(autouse=True)
def _clean_servekit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from an environment without SERVEKIT_* or deployment signs."""
    for var in list(os.environ):
        if var.startswith("SERVEKIT_") or var in (
            "PORT",
            "WEB_CONCURRENCY",
            "KUBERNETES_SERVICE_HOST",
            "DYNO",
            "FLASK_ENV",
            "APP_ENV",
            "ENVIRONMENT",
            "DJANGO_ENV",
            "K_SERVICE",
        ):
            monkeypatch.delenv(var)


def get(url: str, path: str = "/", timeout: float = 30.0) -> tuple[int, bytes]:
    """GET ``url + path``; return status and body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def burst(url: str, n: int, path: str, timeout: float = 30.0) -> tuple[float, list[Any]]:
    """Send ``n`` requests at once; return the elapsed time and each status (or the exception)."""
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = get(url, path, timeout)[0]
        except Exception as exc:  # reported to the test, which asserts on it
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return time.monotonic() - start, results


@pytest.fixture
def serve_app(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with :func:`servekit.testing.running`; all are stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(
            app: str = SLOW_APP, strategy: str | None = None, **options: Any
        ) -> RunningServer:
            log_dir = tmp_path / f"server{len(stack._exit_callbacks)}"
            log_dir.mkdir()
            options.setdefault("cwd", ROOT)
            return stack.enter_context(running(app, strategy, log_dir=log_dir, **options))

        yield start


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m servekit ARGS`` from the repository root, in a session of its own.

    Whatever it started is killed afterwards; a command still running at ``timeout``
    (it started a server) returns with a note in stderr instead of hanging the test.
    """
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith("SERVEKIT_") and k != "PORT"
    }
    child_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "servekit", *args],
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = "", "(still running: it started a server)"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def children_of(pid: int) -> list[int]:
    """Living direct children of ``pid`` (from /proc); an exited child not yet reaped
    (a zombie) is left out."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                state, ppid = stat.rsplit(")", 1)[1].split()[:2]
                if int(ppid) == pid and state not in ("Z", "X"):
                    out.append(int(entry.name))
    return out


def start_logged(
    cmd: list[str], log: Path, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``cmd`` in its own session, log to ``log``; return the URL of its serving event.

    The environment is this process's without SERVEKIT_*/FLASK_* variables, plus ``env``.
    """
    from servekit.testing import _serving_url

    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEKIT_", "FLASK_"))}
    child_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        url = _serving_url(log.read_text(errors="replace"))
        if url:
            return url, proc
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    raise AssertionError(log.read_text())


def stop_logged(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Send ``sig``, wait for the exit status, then kill anything left of the session."""
    proc.send_signal(sig)
    try:
        return proc.wait(30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def assert_drains(server: RunningServer, sig: int, whole_group: bool = False) -> None:
    """Signal ``server`` during a 1.5 s request: the request gets its full 200, exit status 0.

    ``whole_group`` sends the signal to every process of the server, as Ctrl+C in a
    terminal does, instead of to the main process only.
    """
    result: dict[str, Any] = {}

    def slow() -> None:
        result["reply"] = get(server.url, "/sleep?s=1.5")

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.4)
    if whole_group:
        os.killpg(server.pid, sig)
        server.process.wait(30)
    code = server.stop(sig)
    client.join(10)
    assert result["reply"][0] == 200
    assert result["reply"][1].startswith(b"slept 1.5")
    assert code == 0


# -- the reliability suite: its markers, the --heavy flag, a load generator ----------------

#: set to 1 to run the heavy reliability tests (soak, large fuzz runs) without --heavy; not
#: SERVEKIT_*, which servekit would reject as an unknown option in a server's environment
HEAVY_ENV = "RELIABILITY_HEAVY"
#: a file to which each load run's numbers are appended as one JSON line
REPORT_ENV = "RELIABILITY_REPORT"
_LOAD_ROWS: list[dict[str, Any]] = []
#: per-test time limit in heavy runs (the default run keeps pyproject's)
HEAVY_TIMEOUT_SECONDS = 1800


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--heavy",
        action="store_true",
        default=False,
        help=f"also run the heavy reliability tests (soak, large fuzz runs); or {HEAVY_ENV}=1",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--heavy"):
        # Read at import by the modules that size their hypothesis runs with it.
        os.environ[HEAVY_ENV] = "1"
    config.addinivalue_line(
        "markers",
        "reliability: fault, load and abuse tests of real servers (tests/test_reliability_*)",
    )
    config.addinivalue_line(
        "markers", f"heavy: long reliability runs, deselected unless --heavy or {HEAVY_ENV}=1"
    )


def heavy_enabled(config: pytest.Config) -> bool:
    """Whether the heavy reliability tests run in this session."""
    return bool(config.getoption("--heavy")) or os.environ.get(HEAVY_ENV, "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if heavy_enabled(config):
        for item in items:
            if "reliability" in item.keywords:
                item.add_marker(pytest.mark.timeout(HEAVY_TIMEOUT_SECONDS))
        return
    # Heavy runs are deselected (not skipped) by default: the default run claims
    # nothing about them, and the summary line says how many were left out.
    dropped = [item for item in items if "heavy" in item.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if "heavy" not in item.keywords]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _LOAD_ROWS:
        return
    terminalreporter.section("reliability: requests under load")
    columns = ["test", "accepted", "completed", "refused", "lost", "rejected"]
    terminalreporter.write_line("  ".join(columns))
    for row in _LOAD_ROWS:
        extra = [f"{k}={v}" for k, v in row.items() if k not in columns and k != "unanswered"]
        terminalreporter.write_line("  ".join([*(str(row.get(c, "")) for c in columns), *extra]))


@dataclass
class LoadResult:
    """What a :class:`Load` saw, one count per request attempt.

    ``accepted`` requests got a connection (the server's kernel completed the
    handshake); each then either ``completed`` (a full 200 response), was
    ``rejected`` (a full response with another status) or was ``lost`` (reset,
    closed or timed out before its full response). ``refused`` attempts met a
    closed port; ``unanswered`` ones timed out connecting.
    """

    completed: int = 0
    rejected: int = 0
    lost: int = 0
    refused: int = 0
    unanswered: int = 0
    #: why each lost request was lost, and when (``time.monotonic()``)
    losses: list[tuple[float, str]] = field(default_factory=list)
    #: completed requests per serving process (from the body of /sleep)
    pids: Counter[int] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        return self.completed + self.rejected + self.lost

    def row(self, name: str, **extra: Any) -> dict[str, Any]:
        """The numbers (and ``extra`` ones) as a report row, shown in the terminal
        summary and appended to $RELIABILITY_REPORT."""
        row = {
            "test": name,
            "accepted": self.accepted,
            "completed": self.completed,
            "refused": self.refused,
            "lost": self.lost,
            "rejected": self.rejected,
            "unanswered": self.unanswered,
            **extra,
        }
        _LOAD_ROWS.append(row)
        target = os.environ.get(REPORT_ENV)
        if target:
            with open(target, "a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")
        return row


class Load:
    """``clients`` threads that each send requests back to back on fresh connections
    (TCP, or a unix socket for a ``unix:/path`` URL).

    Every attempt is classified (see :class:`LoadResult`). Before :meth:`stopping`
    a refused connection is retried after a pause; after it, a client ends at its
    first refusal, as a real client of a server that went away would. Every client
    also ends at ``limit`` seconds, so a run is always bounded.
    """

    def __init__(
        self,
        url: str,
        clients: int,
        path: str = "/sleep?s=0.2",
        *,
        timeout: float = 30.0,
        limit: float = 120.0,
    ) -> None:
        parts = urlsplit(url)
        self.family = socket.AF_UNIX if parts.scheme == "unix" else socket.AF_INET
        self.address: Any = (
            parts.path
            if self.family == socket.AF_UNIX
            else (parts.hostname or "127.0.0.1", parts.port or 80)
        )
        host = parts.netloc or "localhost"
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        self.timeout = timeout
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._halt = threading.Event()
        self._limit = time.monotonic() + limit
        self._threads = [
            threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join()

    def stopping(self) -> None:
        """The server is being stopped: each client ends at its first refused connection."""
        self._stopping.set()

    def join(self, timeout: float = 60.0) -> LoadResult:
        """Wait for every client to end (bounded); return the counts."""
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"clients still running: {alive}"
        return self.result

    def wait_for(self, completed: int, timeout: float = 60.0) -> None:
        """Block until ``completed`` requests (in all) have completed, or fail after ``timeout``."""
        end = time.monotonic() + timeout
        while self.result.completed < completed:
            assert time.monotonic() < end, f"only {self.result} after {timeout}s"
            time.sleep(0.02)

    def _count(self, kind: str, status: int | None = None, pid: int | None = None) -> None:
        with self._lock:
            setattr(self.result, kind, getattr(self.result, kind) + 1)
            if status is not None:
                self.result.statuses[status] += 1
            if pid is not None:
                self.result.pids[pid] += 1

    def _lose(self, why: str) -> None:
        with self._lock:
            self.result.lost += 1
            self.result.losses.append((time.monotonic(), why))

    def _client(self) -> None:
        while not self._halt.is_set() and time.monotonic() < self._limit:
            outcome = self._one()
            if outcome == "refused" and self._stopping.is_set():
                return
            if outcome in ("refused", "unanswered"):
                self._halt.wait(0.05)

    def _one(self) -> str:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.address)
            except (ConnectionRefusedError, FileNotFoundError):  # no listener, or its file
                self._count("refused")
                return "refused"
            except OSError:
                self._count("unanswered")
                return "unanswered"
            chunks = []
            try:
                sock.sendall(self.request)
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as exc:
                self._lose(f"{type(exc).__name__} after {sum(map(len, chunks))} bytes")
                return "lost"
            return self._judge(b"".join(chunks))
        finally:
            sock.close()

    def _judge(self, data: bytes) -> str:
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if not sep or len(parts) < 2 or not parts[1].isdigit():
            self._lose(f"no complete response head ({len(data)} bytes)")
            return "lost"
        status = int(parts[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is not None and len(body) < length:
            self._lose(f"body cut at {len(body)} of {length} bytes")
            return "lost"
        if status != 200:
            self._count("rejected", status=status)
            return "rejected"
        words = body.split()
        pid = int(words[-1]) if body.startswith(b"slept") and words[-1].isdigit() else None
        self._count("completed", status=status, pid=pid)
        return "completed"


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (from /proc).

    A process that has exited but is not reaped yet (a zombie: a worker being
    recycled) has no memory line; that is ``ProcessLookupError``, like a process gone.
    """
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    for line in status:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    if any(line.startswith("State:") and line.split()[1] in "ZX" for line in status):
        raise ProcessLookupError(pid)
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> list[str]:
    """What each open descriptor of ``pid`` points to (from /proc)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    out = []
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            out.append(os.readlink(entry))
    return sorted(out)


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound (nothing holds it, not even half-bound)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with openssl."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    make_certificate(cert, key)
    return cert, key


def make_certificate(cert: Path, key: Path) -> None:
    """Write a self-signed certificate for 127.0.0.1 (and localhost) and its key."""
    subprocess.run(
        [
            "/usr/bin/openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )


def read_response(sock: Any) -> bytes:
    """One whole response with a Content-Length (a recv may return part of it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
