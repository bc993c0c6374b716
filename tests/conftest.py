"""Shared helpers: start real servers, talk HTTP to them, run the CLI."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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
    """Run ``python -m servekit ARGS`` from the repository root."""
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith("SERVEKIT_") and k != "PORT"
    }
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "servekit", *args],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == pid:
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
