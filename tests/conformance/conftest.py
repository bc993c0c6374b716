"""One real server per strategy, plus bare gunicorn sync as the reference, for the session.

All ten start at once (in parallel) the first time a test asks for one, each in its
own process group on a free loopback port, and all are stopped at the session's end
(SIGTERM, a short drain, then SIGKILL for whatever is left of each process group).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conformance.wire import Connection, request

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.conformance.app:app"
VENV_BIN = Path(sys.executable).parent
STARTUP_SECONDS = 60.0

#: every strategy, in the order of servekit's table
STRATEGIES = [
    "dev",
    "threaded",
    "processes",
    "sync",
    "gthread",
    "gevent",
    "eventlet",
    "tornado",
    "granian",
]
#: where a strategy is known to differ from the reference, by test, and why; each is a
#: strict xfail, so a difference that goes away (or a new one elsewhere) fails the suite.
#: The README's strategy table lists them.
KNOWN_DIFFERENCES: dict[str, dict[str, str]] = {
    "granian": {
        "test_corpus_group[framing-granian]": (
            "granian's parser (hyper) takes a repeated Content-Length and Content-Length with "
            "chunked (it uses chunked; servekit sees no Content-Length), answers 400 where "
            "gunicorn answers 501 to an unknown coding, refuses a Content-Length >= 2**63 at once"
        ),
        "test_corpus_group[chunks-granian]": (
            "hyper takes malformed chunk sizes, extensions and trailers that gunicorn refuses, "
            "and granian's wsgi.input then ends early: the app sees a short or empty body"
        ),
        "test_corpus_group[request-line-granian]": (
            "hyper refuses HTTP/1.2-1.9, closes on CONNECT, takes leading empty lines and bare LF"
        ),
        "test_corpus_group[targets-granian]": (
            "hyper takes raw UTF-8 in the target and gives '/' for an absolute-form target "
            "without a path; a CONNECT authority-form target is refused (servekit: 400)"
        ),
        "test_corpus_group[fields-granian]": (
            "granian passes header values with bytes beyond ASCII as empty strings, shows a "
            "missing and an empty Host alike, keeps only the first of two Content-Type fields"
        ),
        "test_corpus_group[line-endings-granian]": (
            "hyper takes bare LF line endings, refuses bare CR at once, waits on only CRLFs"
        ),
        "test_corpus_group[other-protocols-granian]": (
            "hyper closes on an HTTP/2 preface and answers 400 to a TLS ClientHello"
        ),
        "test_repeated_headers[granian]": (
            "granian joins repeated Cookie fields with ';' (RFC 6265), gunicorn with ','"
        ),
        "test_underscore_headers_dropped[granian]": (
            "granian maps X_Forwarded_For and X-Forwarded-For to one HTTP_X_FORWARDED_FOR "
            "without saying which it saw, so servekit cannot drop the underscored one"
        ),
        "test_response_cases[headers-granian]": (
            "granian sends header values as UTF-8: servekit refuses a latin-1 value beyond "
            "ASCII with a 500 rather than send other bytes"
        ),
        "test_response_cases[framing-granian]": (
            "hyper sends one Content-Length when the app gives two equal ones"
        ),
        "test_environ_value_types[granian]": "granian gives no client port: no REMOTE_PORT",
    },
}
REFERENCE = "reference"
#: for tests whose expectation is absolute: the reference must meet it too (a check of the test)
WITH_REFERENCE = [*STRATEGIES, REFERENCE]

#: options per strategy: one worker, small thread pools
STRATEGY_OPTIONS: dict[str, list[str]] = {
    "dev": [],
    "threaded": [],
    "processes": ["--workers", "1"],
    "sync": ["--workers", "1"],
    "gthread": ["--workers", "1", "--threads", "2"],
    "gevent": ["--workers", "1", "--worker-connections", "50"],
    "eventlet": ["--workers", "1", "--worker-connections", "50"],
    "tornado": ["--workers", "1", "--threads", "2"],
    "granian": ["--workers", "1", "--threads", "2"],
}

#: variables that would change what a server does, left out of its environment
_DROPPED_ENV = (
    "PORT",
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "SCRIPT_NAME",
    "KUBERNETES_SERVICE_HOST",
    "DYNO",
    "FLASK_ENV",
    "APP_ENV",
    "ENVIRONMENT",
    "DJANGO_ENV",
    "K_SERVICE",
)
_GUNICORN_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


#: address-space limit of every server process: a server that allocates without bound
#: (e.g. for a huge chunk size) gets a MemoryError instead of the machine's memory
MEMORY_LIMIT_BYTES = 2 * 1024**3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


@dataclass
class Server:
    """A server process serving the conformance app."""

    name: str
    command: list[str]
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    error: str | None = field(default=None)
    #: how many times it was found dead and started again
    restarts: int = 0

    @property
    def log_path(self) -> Path:
        """This run's log file (each restart gets its own)."""
        suffix = f".{self.restarts}" if self.restarts else ""
        return self.directory / f"{self.name}{suffix}.log"

    def log(self) -> str:
        """The server's output so far (this run's)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's output."""
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process (its readiness is polled by :meth:`poll_ready`)."""
        self.port, self.error = 0, None
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_limit_memory,
            )

    def poll_ready(self) -> bool:
        """One readiness check: True once it answers, or once it has failed (``error``)."""
        if not self.alive():
            self.error = f"exited with {self.process and self.process.poll()}"
            return True
        self.port = self.port or _announced_port(self) or 0
        return bool(self.port) and _answers(self.port)

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group, and reap the main process."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def revive(self) -> None:
        """Start it again after it died (so one crash does not fail every later test)."""
        self.kill()
        self.restarts += 1
        self.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.poll_ready():
            if time.monotonic() > deadline:
                self.error = f"did not answer within {STARTUP_SECONDS:.0f}s after a restart"
                return
            time.sleep(0.1)


def _child_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SERVEKIT_", "FLASK_")) and key not in _DROPPED_ENV
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _commands() -> dict[str, list[str]]:
    commands = {
        name: [
            sys.executable,
            "-m",
            "servekit",
            "run",
            APP,
            "--strategy",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-format",
            "json",
            "--graceful-timeout",
            "3",
            *options,
        ]
        for name, options in STRATEGY_OPTIONS.items()
    }
    commands[REFERENCE] = [
        str(VENV_BIN / "gunicorn"),
        "--no-control-socket",
        "-k",
        "sync",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--graceful-timeout",
        "3",
        APP,
    ]
    return commands


def _announced_port(server: Server) -> int | None:
    text = server.log()
    if server.name == REFERENCE:
        match = _GUNICORN_LISTENING.search(text)
        return int(match.group(1)) if match else None
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                event = json.loads(line)
                if event.get("event") == "serving":
                    return int(str(event["url"]).rsplit(":", 1)[1].strip("/"))
    return None


def _answers(port: int) -> bool:
    try:
        with Connection(port, timeout=2.0) as conn:
            conn.send(request("GET", "/ping", [("Connection", "close")]))
            _, response = conn.read_final()
            return response is not None and response.status == 200
    except (OSError, TimeoutError, ValueError):
        return False


def start_all(directory: Path, servers: dict[str, Server]) -> None:
    """Start the reference and every strategy at once (into ``servers``); wait until each
    answers or has failed."""
    for name, command in _commands().items():
        servers[name] = Server(name, command, directory)
        servers[name].start()
    deadline = time.monotonic() + STARTUP_SECONDS
    waiting = set(servers)
    while waiting and time.monotonic() < deadline:
        waiting -= {name for name in waiting if servers[name].poll_ready()}
        time.sleep(0.1)
    for name in waiting:
        servers[name].error = f"did not answer within {STARTUP_SECONDS:.0f}s"


def stop_all(servers: dict[str, Server]) -> None:
    """SIGTERM every main process, wait a little for the drains, SIGKILL every process group."""
    for server in servers.values():
        if server.alive():
            assert server.process is not None
            with contextlib.suppress(ProcessLookupError):
                server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for server in servers.values():
        if server.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(max(0.1, deadline - time.monotonic()))
        server.kill()


class Servers:
    """The session's servers by name (a strategy, or ``reference``)."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self._servers = servers

    def __getitem__(self, name: str) -> Server:
        """The server ``name``, started again first if it has died (failing the test if
        it cannot be started)."""
        server = self._servers[name]
        if not server.error and not server.alive():
            server.revive()
        if server.error:
            pytest.fail(f"{name} server: {server.error}\n{server.log_tail()}", pytrace=False)
        return server

    def port(self, name: str) -> int:
        """The port ``name`` listens on (failing the test if it did not start)."""
        return self[name].port

    @property
    def reference(self) -> int:
        """The reference server's port."""
        return self.port(REFERENCE)

    def all(self) -> dict[str, Server]:
        """Every server, started or not."""
        return dict(self._servers)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the known differences (:data:`KNOWN_DIFFERENCES`) as strict expected failures."""
    for item in items:
        if not item.nodeid.startswith("tests/conformance/"):
            continue
        for known in KNOWN_DIFFERENCES.values():
            reason = known.get(item.name)
            if reason is not None:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The reference and every strategy, started together once for the session."""
    directory = tmp_path_factory.mktemp("conformance-servers")
    started: dict[str, Server] = {}
    try:
        start_all(directory, started)
        yield Servers(started)
    finally:
        stop_all(started)
