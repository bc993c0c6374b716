"""An app whose import ends the process makes servekit exit 2 with one line, not respawn forever."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, port_is_free

pytestmark = pytest.mark.server

ENDINGS = {
    "sys_exit": ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
    "keyboard_interrupt": ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt"),
    "os_exit": ("import os\nos._exit(7)\n", "exited with status 7"),
    "crash": ("import ctypes\nctypes.string_at(0)\n", "killed by SIGSEGV"),
}


@pytest.mark.parametrize("strategy", ["sync", "gthread", "gevent", "eventlet", "tornado"])
@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_import_that_ends_the_process(tmp_path: Path, strategy: str, ending: str) -> None:
    """Each way an import can end the worker: exit 2, one error line naming it, nothing left."""
    source, words = ENDINGS[ending]
    (tmp_path / "endingapp.py").write_text(source + "def app(e, s):\n    return []\n")
    port = free_port()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "servekit", "run", "endingapp:app", "--strategy", strategy,
         "--workers", "2", "--port", str(port), "--chdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, start_new_session=True,
    )
    elapsed = time.monotonic() - started
    errors = [line for line in proc.stderr.splitlines() if line.startswith("servekit: error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and words in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert elapsed < 30  # bounded: a few failed boots, not a respawn loop
    assert port_is_free(port)


@pytest.mark.parametrize("bind", ["tcp", "unix"])
def test_preload_app_with_a_failing_import(tmp_path: Path, bind: str) -> None:
    """preload_app with an import that raises: exit 2, one line, nothing bound, no socket file."""
    (tmp_path / "brokenpre.py").write_text("raise RuntimeError('boom at import')\n")
    port = free_port()
    sock = tmp_path / "app.sock"
    where = ["--port", str(port)] if bind == "tcp" else ["--bind", f"unix:{sock}"]
    proc = subprocess.run(
        [sys.executable, "-m", "servekit", "run", "brokenpre:app", "--strategy", "sync",
         *where, "--chdir", str(tmp_path), "--gunicorn", '{"preload_app": true}'],
        cwd=ROOT, capture_output=True, text=True, timeout=60, start_new_session=True,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("servekit: error:")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(errors) == 1 and "boom at import" in errors[0]
    assert "Traceback" not in proc.stderr
    assert port_is_free(port)
    assert not sock.exists()
