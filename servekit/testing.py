"""Serve an app for a test: ``with running("myapp:app", strategy="gevent") as server: ...``.

The server runs in its own process group on a free loopback port, its log goes
to a file, readiness is polled over HTTP, and on exit it gets SIGTERM (a graceful
drain), then SIGKILL for anything of its process group still alive.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = ["RunningServer", "ServerStartError", "options_for", "running"]


class _Process(Protocol):
    """What :class:`RunningServer` needs of a process: ``subprocess.Popen`` has it."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...


class _Forked:
    """A forked child serving an app object, with the ``Popen`` methods tests use."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


def _fork_server(
    app: Any,
    strategy: str | None,
    options: dict[str, Any],
    env: dict[str, str],
    cwd: Any,
    log_path: Path,
) -> _Forked:
    """Serve an app object in a forked child of its own session, logging to ``log_path``."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid:
        os.close(log_fd)
        return _Forked(pid)
    code = 1
    try:
        os.setsid()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        # The parent's sys streams may be a test runner's capture objects.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        from servekit.run import serve

        serve(app, strategy, **options)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


_URL_CONSOLE = re.compile(r"\bserving\s.*?\burl=(\S+)")


def _serving_url(text: str) -> str | None:
    """The URL from the ``serving`` event in a JSON or console log."""
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "serving":
                    return str(event["url"])
        else:
            match = _URL_CONSOLE.search(line)
            if match:
                return match.group(1)
    return None


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message holds its log."""


@dataclass
class RunningServer:
    """A server started by :func:`running`."""

    url: str
    process: _Process
    log_path: Path
    returncode: int | None = field(default=None)

    @property
    def pid(self) -> int:
        """The servekit main process (werkzeug server or gunicorn master)."""
        return self.process.pid

    def log(self) -> str:
        """Everything the server has written to stderr and stdout so far."""
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The log's JSON lines, parsed (other lines are skipped)."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` to the main process, wait for it, then clean up its process group.

        Returns:
            The main process's exit status.
        """
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.process.pid)
                self.process.wait(10)
        code = self.process.wait(10)
        _kill_group(self.process.pid)
        self.returncode = code
        return code


def options_for(strategy: str, **options: Any) -> dict[str, Any]:
    """The options among ``options`` that ``strategy`` takes, for tests parametrized over strategies.

    ``running(app, s, **options_for(s, workers=1, threads=2))`` gives ``workers``
    only to strategies with workers and ``threads`` only to threaded ones; serving
    an option a strategy cannot take is an error, so a test over several strategies
    names what each should get this way.

    Raises:
        ConfigError: an option name no strategy has (a typo is never dropped) or an
            unknown strategy.
    """
    from servekit.backends import ALIASES, REGISTRY, load_strategy
    from servekit.config import AutoConfig
    from servekit.errors import ConfigError, suggest
    from servekit.resolver import all_options

    name = ALIASES.get(strategy.strip().lower(), strategy.strip().lower())
    if name != "auto" and name not in REGISTRY:
        msg = f"unknown strategy {strategy!r}{suggest(name, ['auto', *REGISTRY])}"
        raise ConfigError(msg, option="strategy")
    model = AutoConfig if name == "auto" else load_strategy(name).config
    known = all_options()
    for option in options:
        if option not in known:
            msg = f"unknown option {option!r}{suggest(option, known)}"
            raise ConfigError(msg, option=option)
    return {k: v for k, v in options.items() if k in model.model_fields}


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _flags(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        dashed = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(dashed if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, dict):
            args += [dashed, json.dumps(value)]  # the CLI reads the gunicorn option as JSON
        else:
            args += [dashed, str(value)]
    return args


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    conn_cls = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    kwargs: dict[str, Any] = {"timeout": 2}
    if parts.scheme == "https":
        import ssl

        kwargs["context"] = ssl._create_unverified_context()
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, **kwargs)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def running(
    app: Any,
    strategy: str | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    startup_timeout: float = 30.0,
    log_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Iterator[RunningServer]:
    """Serve ``app`` in a subprocess on a free loopback port until the block ends.

    Args:
        app: an import string (``"pkg.module:app"``, importable from ``cwd``), served by
            ``servekit run`` in a new process; or a WSGI callable, served by ``serve()``
            in a forked child (so it must be importable-free state: no running threads
            it depends on).
        strategy: the strategy name (``SERVEKIT_STRATEGY`` in ``env`` overrides it, as usual).
        env: extra environment variables for the server process.
        cwd: the server's working directory (the current one by default).
        startup_timeout: seconds to wait for the first answer.
        log_dir: where the log file goes (a temporary directory by default).
        **options: servekit options, passed as command-line flags.

    Yields:
        A :class:`RunningServer` with ``.url``.

    Raises:
        ServerStartError: the server exited or did not answer in time (with its log).
    """
    options.setdefault("host", "127.0.0.1")
    if "bind" in options:
        options.pop("host")
    else:
        options.setdefault("port", 0)
    options.setdefault("log_format", "json")
    directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="servekit-"))
    log_path = directory / "server.log"
    process: _Process
    if not isinstance(app, str):
        process = _fork_server(app, strategy, options, env or {}, cwd, log_path)
    else:
        cmd = [sys.executable, "-m", "servekit", "run", app]
        if strategy is not None:
            cmd += ["--strategy", strategy]
        cmd += _flags(options)
        child_env = dict(os.environ)
        child_env.update(env or {})
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env,
                cwd=cwd,
                start_new_session=True,
            )
    server = RunningServer(url="", process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.url:
            text = server.log()
            url = _serving_url(text)
            if url:
                server.url = url
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerStartError(f"server did not start (exit {process.poll()}):\n{text}")
            time.sleep(0.05)
        while not (server.url.startswith("unix:") or _answers(server.url)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerStartError(
                    f"server did not answer (exit {process.poll()}):\n{server.log()}"
                )
            time.sleep(0.05)
        yield server
    finally:
        server.stop()
