"""Where users meet servekit: the pytest fixture, running() with app objects, `flask serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from servekit.testing import running
from tests.apps import slow
from tests.conftest import ROOT, children_of, get, start_logged, stop_logged

pytestmark = pytest.mark.server

FLASK_APP = """
from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "hello from flask"
"""


def test_fixture_serves_import_string(servekit_server: Any) -> None:
    """The pytest plugin's factory fixture returns the URL of a running server."""
    url = servekit_server("tests.apps.slow:app", strategy="gthread", workers=1, threads=2, cwd=ROOT)
    assert get(url, "/") == (200, b"ok")
    assert servekit_server.servers[0].url == url


@pytest.mark.parametrize("strategy", ["threaded", "sync", "gevent"])
def test_running_serves_app_object(strategy: str, tmp_path: Path) -> None:
    """running() also takes a WSGI object (served by serve() in a forked child) and stops it."""
    options: dict[str, Any] = {} if strategy == "threaded" else {"workers": 1}
    with running(slow.app, strategy, log_dir=tmp_path, **options) as server:
        assert get(server.url, "/") == (200, b"ok")
        pid = server.pid
        kids = children_of(pid)
    assert server.returncode == 0
    assert not Path(f"/proc/{pid}").exists()
    for kid in kids:
        assert not Path(f"/proc/{kid}").exists()


def test_running_reports_startup_failure(tmp_path: Path) -> None:
    """A server that cannot start raises with its log in the message."""
    from servekit.testing import ServerStartError

    with (
        pytest.raises(ServerStartError, match="no attribute 'nope'"),
        running("tests.apps.slow:nope", "dev", cwd=ROOT, log_dir=tmp_path),
    ):
        pass


def _flask(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen[bytes], Path]:
    (tmp_path / "hello_flask.py").write_text(FLASK_APP)
    log = tmp_path / "flask.log"
    url, proc = start_logged(
        [str(Path(sys.executable).parent / "flask"), *args], log, tmp_path, env
    )
    return url, proc, log


@pytest.mark.parametrize("strategy", ["gthread", "gevent", "dev"])
def test_flask_serve_uses_flask_discovery(tmp_path: Path, strategy: str) -> None:
    """`flask --app hello_flask serve --strategy S` serves the app Flask discovers."""
    extra = [] if strategy == "dev" else ["--workers", "1"]
    url, proc, log = _flask(
        tmp_path,
        "--app",
        "hello_flask",
        "serve",
        "--strategy",
        strategy,
        "--port",
        "0",
        "--log-format",
        "json",
        *extra,
    )
    try:
        assert get(url, "/") == (200, b"hello from flask")
    finally:
        assert stop_logged(proc) == 0
    serving = next(json.loads(line) for line in log.read_text().splitlines() if '"serving"' in line)
    assert serving["strategy"] == strategy


def test_flask_serve_with_flask_app_env_and_servekit_env(tmp_path: Path) -> None:
    """FLASK_APP finds the app; SERVEKIT_STRATEGY switches the server as everywhere."""
    url, proc, log = _flask(
        tmp_path,
        "serve",
        "--port",
        "0",
        "--log-format",
        "json",
        env={"FLASK_APP": "hello_flask", "SERVEKIT_STRATEGY": "sync", "SERVEKIT_WORKERS": "1"},
    )
    try:
        assert get(url, "/")[0] == 200
    finally:
        assert stop_logged(proc) == 0
    assert '"strategy": "sync"' in log.read_text()


def test_flask_serve_bad_option_exits_2(tmp_path: Path) -> None:
    """A servekit mistake under `flask serve` is the same one-line exit 2."""
    (tmp_path / "hello_flask.py").write_text(FLASK_APP)
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "flask"),
            "--app",
            "hello_flask",
            "serve",
            "--strategy",
            "gevent",
            "--threads",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "option 'threads'" in proc.stderr and "Traceback" not in proc.stderr


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@pytest.mark.parametrize("strategy", ["processes", "gthread", "eventlet", "tornado"])
def test_running_leaves_no_process_behind(tmp_path: Path, strategy: str) -> None:
    """After running() ends, nothing of the server's process group is left."""
    with running("tests.apps.slow:app", strategy, workers=2, cwd=ROOT, log_dir=tmp_path) as server:
        assert get(server.url, "/")[0] == 200
        assert len(_group_members(server.pid)) >= 3 if strategy != "processes" else True
    assert _group_members(server.pid) == []
    assert server.returncode == 0
