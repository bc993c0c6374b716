"""The granian strategy: real granian servers on loopback, held to servekit's promises."""

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
    free_port,
    get,
    port_is_free,
    run_cli,
)

pytestmark = pytest.mark.server

SMALL = {"workers": 2, "threads": 2}


def test_explain_states_capacity() -> None:
    """explain names the granian server and capacity workers x threads."""
    proc = run_cli("explain", "tests.apps.slow:app", "--strategy", "granian", "-w", "2", "--threads", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["server"] == "granian" and data["worker_class"] is None
    assert data["capacity"] == 6 and data["capacity_text"] == "2 workers x 3 threads"


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--timeout", "5"), ("--max-requests", "10"), ("--gunicorn", "{}"), ("--worker-connections", "9")],
)
def test_options_granian_cannot_take_are_refused(flag: str, value: str) -> None:
    """An option granian has no equivalent for is an exit 2 naming it, never dropped."""
    proc = run_cli("run", "tests.apps.slow:app", "--strategy", "granian", flag, value)
    assert proc.returncode == 2
    assert f"option '{flag[2:].replace('-', '_')}'" in proc.stderr
    assert "does not apply to strategy 'granian'" in proc.stderr


def test_serves_and_logs_requests(serve_app: Any) -> None:
    """A request is served and logged as a JSON request event; serving is announced once."""
    server = serve_app(strategy="granian", **SMALL)
    assert get(server.url, "/") == (200, b"ok")
    time.sleep(0.3)
    events = server.events()
    assert sum(e.get("event") == "serving" for e in events) == 1
    assert any(e.get("event") == "request" and e.get("status") == 200 for e in events)


def test_burst_of_twice_capacity_takes_two_rounds(serve_app: Any) -> None:
    """2 x capacity requests of 0.3 s take about two rounds: not one, not four."""
    server = serve_app(strategy="granian", keepalive=0, **SMALL)
    burst(server.url, 2, "/")
    elapsed, statuses = burst(server.url, 8, "/sleep?s=0.3")
    assert statuses == [200] * 8
    assert 0.55 <= elapsed < 0.85, f"{elapsed:.2f}s for 8 requests"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_request_in_flight(serve_app: Any, sig: int) -> None:
    """SIGTERM/SIGINT during a 1.5 s request: 200 with the full body, exit status 0."""
    assert_drains(serve_app(strategy="granian", **SMALL), sig)


def test_ctrl_c_to_the_group_drains(serve_app: Any) -> None:
    """Ctrl+C to the whole process group drains too (granian alone could hang a worker)."""
    assert_drains(serve_app(strategy="granian", **SMALL), signal.SIGINT, whole_group=True)


def test_killed_worker_is_replaced(serve_app: Any) -> None:
    """kill -9 of a worker: it is replaced and the server serves on."""
    server = serve_app(strategy="granian", **SMALL)
    workers = children_of(server.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        len(children_of(server.pid)) < 2 or workers[0] in children_of(server.pid)
    ):
        time.sleep(0.2)
    assert len(children_of(server.pid)) == 2
    assert get(server.url, "/")[0] == 200


def test_import_failure_is_one_line_exit_2(tmp_path: Path) -> None:
    """An app that fails to import: one servekit error line, exit 2, the port free."""
    (tmp_path / "brokengr.py").write_text("raise RuntimeError('boom in granian')\n")
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "servekit", "run", "brokengr:app", "--strategy", "granian",
         "-w", "2", "--port", str(port), "--chdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, start_new_session=True,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("servekit: error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and "boom in granian" in errors[0]
    assert port_is_free(port)
