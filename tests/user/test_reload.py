"""``servekit run --reload`` through a developer's mistake: a syntax error saved into the app
module, then a fix; for one werkzeug strategy (threaded) and one gunicorn strategy (sync)."""

from __future__ import annotations

import http.client
import re
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.user.conftest import Server, ServerGroup, Venv, sizing_flags, write_files

pytestmark = [pytest.mark.user, pytest.mark.server, pytest.mark.timeout(300)]

RELOAD_STRATEGIES = ("threaded", "sync")

MODULE = textwrap.dedent(
    '''
    """The module the reload test edits while the server runs."""

    from flask import Flask

    app = Flask(__name__)


    @app.get("/")
    def index():
        return "VERSION"
    '''
)
GOOD_1 = MODULE.replace("VERSION", "version 1")
GOOD_2 = MODULE.replace("VERSION", "version 2")
BROKEN = MODULE.replace('"VERSION"', '"version 2" +')
BROKEN_LINE = BROKEN.splitlines().index('    return "version 2" +') + 1

#: the reloaders poll about once a second; this leaves them time to see the broken save
AFTER_ERROR_SECONDS = 3.0
FIX_SECONDS = 30.0


@dataclass
class ReloadRun:
    """What one server did through the broken save and the fix."""

    server: Server
    first: str = ""
    alive_after_error: bool = False
    log_after_error: str = ""
    last_seen: str = ""
    served_fix: bool = False


def _body(server: Server) -> str:
    try:
        reply = server.get("/")
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"{reply.status} {reply.text()}"


def scenario(server: Server, module: Path) -> ReloadRun:
    """Serve version 1, save a syntax error, wait, save version 2, wait for it to be served."""
    run = ReloadRun(server)
    if not server.ready:
        return run
    run.first = _body(server)
    module.write_text(BROKEN)
    time.sleep(AFTER_ERROR_SECONDS)
    run.alive_after_error = server.proc.poll() is None
    run.log_after_error = server.log()
    module.write_text(GOOD_2)
    deadline = time.monotonic() + FIX_SECONDS
    while time.monotonic() < deadline:
        run.last_seen = _body(server)
        if run.last_seen == "200 version 2":
            run.served_fix = True
            break
        if server.proc.poll() is not None:
            break
        time.sleep(0.25)
    return run


@pytest.fixture(scope="module")
def runs(
    user_venv: Venv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ReloadRun]]:
    """Both strategies taken through the scenario side by side, each in its own project."""
    with ServerGroup(tmp_path_factory.mktemp("reload-servers")) as group:
        modules = {}
        for strategy in RELOAD_STRATEGIES:
            project = write_files(
                tmp_path_factory.mktemp(f"reload-{strategy}"),
                {"myproject/__init__.py": "", "myproject/wsgi.py": GOOD_1},
            )
            modules[strategy] = project / "myproject" / "wsgi.py"
            port = group.free_port()
            argv = [user_venv.exe("servekit"), "run", "myproject.wsgi:app", "--reload"]
            argv += ["--strategy", strategy, "--port", str(port), *sizing_flags(strategy)]
            group.start(strategy, argv, port, project, user_venv.env())
        group.wait_ready()
        with ThreadPoolExecutor(len(RELOAD_STRATEGIES)) as pool:
            futures = {
                s: pool.submit(scenario, group.servers[s], modules[s]) for s in RELOAD_STRATEGIES
            }
            yield {s: f.result() for s, f in futures.items()}


@pytest.mark.parametrize("strategy", RELOAD_STRATEGIES)
def test_reload_serves_the_fix_after_a_syntax_error(
    runs: dict[str, ReloadRun], strategy: str
) -> None:
    """After a syntax error and then a fixed save, the reloading server answers with the new code."""
    run = runs[strategy]
    run.server.require()
    assert run.first == "200 version 1", run.server.log()
    assert run.served_fix, f"last answer: {run.last_seen!r}\n{run.server.log()}"


@pytest.mark.parametrize("strategy", RELOAD_STRATEGIES)
def test_reload_keeps_running_through_the_syntax_error(
    runs: dict[str, ReloadRun], strategy: str
) -> None:
    """A syntax error saved while reloading does not stop the server process."""
    run = runs[strategy]
    run.server.require()
    assert run.alive_after_error, f"the server exited:\n{run.log_after_error}"


@pytest.mark.parametrize("strategy", RELOAD_STRATEGIES)
def test_reload_error_names_the_users_file_and_line(
    runs: dict[str, ReloadRun], strategy: str
) -> None:
    """The logged syntax error points at the user's file and line."""
    run = runs[strategy]
    run.server.require()
    where = re.compile(rf"myproject/wsgi\.py(\", line |:){BROKEN_LINE}\b")
    assert "SyntaxError" in run.log_after_error, run.log_after_error
    assert where.search(run.log_after_error), (
        f"no mention of myproject/wsgi.py line {BROKEN_LINE}:\n{run.log_after_error}"
    )
