"""A venv with servekit's wheel but no extras: asking for gevent names a pip command, and that
command, run as printed, makes the gevent strategy serve."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.user.conftest import ServerGroup, Venv, run_command, sizing_flags, write_files

pytestmark = [pytest.mark.user, pytest.mark.server, pytest.mark.timeout(300)]

PLAIN_APP = '''"""A WSGI app with no framework (the venv has no Flask)."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello without extras\\n"]
'''

PIP_COMMAND = re.compile(r"(?:\S*python[0-9.]* -m )?pip[0-9.]* install [^;()\n]+")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory with ``plainapp.py``."""
    return write_files(tmp_path_factory.mktemp("plain-project"), {"plainapp.py": PLAIN_APP})


def gevent_argv(venv: Venv, port: int) -> list[str]:
    """``servekit run plainapp:app --strategy gevent`` on ``port``."""
    argv = [venv.exe("servekit"), "run", "plainapp:app", "--strategy", "gevent"]
    return [*argv, "--port", str(port), *sizing_flags("gevent")]


@pytest.fixture(scope="module")
def refused(bare_venv: Venv, project: Path) -> subprocess.CompletedProcess[str]:
    """The gevent strategy asked for before gevent is installed."""
    return run_command(gevent_argv(bare_venv, 0), project, bare_venv.env(), timeout=30)


def test_missing_gevent_is_one_line_naming_pip(
    refused: subprocess.CompletedProcess[str],
) -> None:
    """Without gevent, the gevent strategy exits 2 with one line that names a pip command."""
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2, refused.stderr
    assert len(lines) == 1, refused.stderr
    assert "gevent" in lines[0]
    assert PIP_COMMAND.search(lines[0]), lines[0]


@pytest.fixture(scope="module")
def installed(
    bare_venv: Venv, project: Path, refused: subprocess.CompletedProcess[str]
) -> subprocess.CompletedProcess[str]:
    """The first pip command the message names, run as printed from the project directory."""
    found = PIP_COMMAND.search(refused.stderr)
    if found is None:
        pytest.fail(f"no pip command in: {refused.stderr}", pytrace=False)
    command = found.group(0).strip().rstrip(".,")
    return run_command(command, project, bare_venv.env(), timeout=180)


def test_named_pip_command_installs(installed: subprocess.CompletedProcess[str]) -> None:
    """The pip command from the message succeeds in the user's venv and directory."""
    assert installed.returncode == 0, f"$ {installed.args}\n{installed.stdout}\n{installed.stderr}"


@pytest.fixture(scope="module")
def gevent_group(
    bare_venv: Venv,
    project: Path,
    installed: subprocess.CompletedProcess[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerGroup]:
    """The gevent strategy started again after the named command ran."""
    with ServerGroup(tmp_path_factory.mktemp("after-install")) as group:
        port = group.free_port()
        group.start("gevent", gevent_argv(bare_venv, port), port, project, bare_venv.env())
        group.wait_ready()
        yield group


def test_gevent_serves_after_the_named_command(gevent_group: ServerGroup) -> None:
    """After the pip command from the message, the gevent strategy serves the app."""
    reply = gevent_group.servers["gevent"].get("/")
    assert (reply.status, reply.body) == (200, b"hello without extras\n")
