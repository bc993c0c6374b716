"""What a user reads when things go wrong: an app whose import raises under ``sync`` with two
workers, every line JSON with ``--log-format json``, and the dev-server warning once."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.user.conftest import FLASK_WSGI, ServerGroup, Venv, run_command, write_files

pytestmark = [pytest.mark.user, pytest.mark.server, pytest.mark.timeout(300)]

BROKEN_APP = 'raise RuntimeError("boom: the app failed to import")\n'

#: the dev-server warning, as a log event or as a raw Python warning
DEV_WARNING = re.compile(r"DevServerWarning|chosen for production|not built for production")


@dataclass
class Output:
    """A finished command's exit status and streams."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str

    def shown(self) -> str:
        """Everything it printed, for failure messages."""
        return (
            f"$ {' '.join(self.argv)}\n(exit status: {self.returncode})\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def lines(self) -> list[str]:
        """Its non-empty lines, stdout's then stderr's."""
        return [line for line in (self.stdout + "\n" + self.stderr).splitlines() if line.strip()]

    def not_json(self) -> list[str]:
        """Its lines that are not one JSON object each."""
        bad = []
        for line in self.lines():
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                bad.append(line)
        return bad


def _finished(proc: subprocess.CompletedProcess[str]) -> Output:
    return Output(list(proc.args), proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def outputs(
    user_venv: Venv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Output]]:
    """Two broken-app runs and two good servers (JSON logs) stopped after one request each."""
    project = write_files(
        tmp_path_factory.mktemp("logs-project"),
        {"brokenapp.py": BROKEN_APP, "myproject/__init__.py": "", "myproject/wsgi.py": FLASK_WSGI},
    )
    servekit = user_venv.exe("servekit")
    broken = [servekit, "run", "brokenapp:app", "--strategy", "sync", "--workers", "2"]
    with ServerGroup(tmp_path_factory.mktemp("logs-servers")) as group:
        port = group.free_port()
        argv = [servekit, "run", "myproject.wsgi:app", "--strategy", "threaded"]
        argv += ["--port", str(port), "--log-format", "json"]
        env = user_venv.env({"SERVEKIT_ENV": "production"})
        group.start("threaded-production", argv, port, project, env)
        port = group.free_port()
        argv = [servekit, "run", "myproject.wsgi:app", "--strategy", "gthread", "--workers", "1"]
        argv += ["--threads", "2", "--port", str(port), "--log-format", "json"]
        group.start("gthread-json", argv, port, project, user_venv.env())

        with ThreadPoolExecutor(2) as pool:
            runs = {
                "broken-console": pool.submit(
                    run_command, [*broken, "--port", "0"], project, user_venv.env(), 30
                ),
                "broken-json": pool.submit(
                    run_command,
                    [*broken, "--port", "0", "--log-format", "json"],
                    project,
                    user_venv.env(),
                    30,
                ),
            }
            group.wait_ready()
            found = {name: _finished(future.result()) for name, future in runs.items()}
        for name, server in group.servers.items():
            if server.ready:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    server.get("/")
                    server.get("/missing")
            group.stop(name)
            found[name] = Output(server.argv, server.returncode, server.stdout(), server.stderr())
        yield found


def test_import_error_under_sync_is_one_error_line(outputs: dict[str, Output]) -> None:
    """An app whose import raises, under sync with 2 workers, prints one ``servekit: error:`` line."""
    out = outputs["broken-console"]
    errors = [line for line in out.lines() if "servekit: error:" in line]
    assert len(errors) == 1, out.shown()
    assert errors[0].startswith("servekit: error:"), out.shown()
    assert errors[0] in out.stderr.splitlines(), out.shown()
    assert "boom: the app failed to import" in errors[0], out.shown()
    assert "Traceback" not in out.stdout + out.stderr, out.shown()


def test_import_error_under_sync_exits_2(outputs: dict[str, Output]) -> None:
    """An app whose import raises, under sync with 2 workers, makes servekit exit with status 2."""
    out = outputs["broken-console"]
    assert out.returncode == 2, out.shown()


def test_import_error_in_json_format_is_json(outputs: dict[str, Output]) -> None:
    """With ``--log-format json`` the failed start writes only JSON lines, the error among them, once."""
    out = outputs["broken-json"]
    assert out.returncode == 2, out.shown()
    assert out.not_json() == [], out.shown()
    errors = [line for line in out.lines() if "boom: the app failed to import" in line]
    assert len(errors) == 1, out.shown()


@pytest.mark.parametrize("name", ["threaded-production", "gthread-json"])
def test_every_line_is_json(outputs: dict[str, Output], name: str) -> None:
    """A server run with ``--log-format json`` writes nothing but JSON lines, start to stop."""
    out = outputs[name]
    assert out.lines(), out.shown()
    assert out.not_json() == [], out.shown()
    assert out.returncode == 0, out.shown()


def test_dev_server_warning_once(outputs: dict[str, Output]) -> None:
    """The dev-server warning for threaded in production appears exactly once (no raw Python warning)."""
    out = outputs["threaded-production"]
    warned = [line for line in out.lines() if DEV_WARNING.search(line)]
    assert len(warned) == 1, out.shown()
    assert json.loads(warned[0]).get("level") == "warning", warned[0]
