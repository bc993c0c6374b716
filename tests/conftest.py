"""Shared helpers: start real servers, talk HTTP to them, run the CLI."""

from __future__ import annotations

import contextlib
import http.client
import os
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
