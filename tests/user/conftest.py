"""servekit as a user meets it: its wheel, installed non-editable in a fresh venv, run from a
project directory with no PYTHONPATH, serving real Flask and Django apps on 127.0.0.1.

The wheel is built once per session from the working tree; each venv is built once per
session under pytest's temporary directory. Every command runs in a session of its own
with an environment stripped of PYTHONPATH, VIRTUAL_ENV and SERVEKIT_*; servers are
stopped with SIGTERM to their process group, then SIGKILL of whatever is left.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest

ROOT = Path(__file__).resolve().parents[2]

STRATEGIES = (
    "dev",
    "threaded",
    "processes",
    "sync",
    "gthread",
    "gevent",
    "eventlet",
    "tornado",
    "granian",
)

# Variables a user's shell would not carry into their project, or that would steer
# servekit, gunicorn or Flask from outside the command under test.
_STRIPPED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "PORT",
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "DJANGO_SETTINGS_MODULE",
    "KUBERNETES_SERVICE_HOST",
    "DYNO",
    "K_SERVICE",
    "ECS_CONTAINER_METADATA_URI_V4",
    "FLY_APP_NAME",
    "RENDER",
    "RAILWAY_ENVIRONMENT",
    "APP_ENV",
    "ENVIRONMENT",
    "DJANGO_ENV",
)

READY_SECONDS = 45.0


def sizing_flags(strategy: str) -> list[str]:
    """The smallest sizes each strategy takes (``workers`` is refused by dev/threaded)."""
    if strategy in ("dev", "threaded"):
        return []
    flags = ["--workers", "1"]
    if strategy in ("gthread", "tornado", "granian"):
        flags += ["--threads", "2"]
    if strategy in ("gevent", "eventlet"):
        flags += ["--worker-connections", "50"]
    return flags


@dataclass(frozen=True)
class Venv:
    """A virtual environment with servekit's wheel installed into it."""

    path: Path

    @property
    def bin(self) -> Path:
        """The venv's scripts directory."""
        return self.path / "bin"

    def exe(self, name: str) -> str:
        """The path of the venv's script ``name`` (``servekit``, ``python``, ``flask`` ...)."""
        return str(self.bin / name)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A user's environment with this venv first on PATH, plus ``extra``."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in _STRIPPED and not k.startswith(("SERVEKIT_", "FLASK_", "PYTEST_"))
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONUNBUFFERED"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env.update(extra or {})
        return env


def run_command(
    argv: Sequence[str] | str,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end in a session of its own; kill what is left of it afterwards.

    A command still running at ``timeout`` (it started serving) is killed and returns
    with returncode None and a note appended to its stderr.
    """
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        shell=isinstance(argv, str),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        _kill_group(proc.pid, signal.SIGKILL)
    if timed_out:
        err += f"\n(still running after {timeout} s: killed)"
    return subprocess.CompletedProcess(proc.args, None if timed_out else proc.returncode, out, err)  # type: ignore[arg-type]


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _build_venv(path: Path, requirements: Sequence[str]) -> Venv:
    venv = Venv(path)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    proc = run_command(
        [venv.exe("python"), "-m", "pip", "install", "-q", *requirements],
        cwd=path,
        env=venv.env(),
        timeout=300,
    )
    assert proc.returncode == 0, f"pip install {requirements} failed:\n{proc.stdout}\n{proc.stderr}"
    where = run_command(
        [venv.exe("python"), "-c", "import servekit; print(servekit.__file__)"],
        cwd=path,
        env=venv.env(),
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(path)), f"servekit not from the venv: {where.stdout}"
    return venv


@pytest.fixture(scope="session")
def servekit_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """servekit's wheel, built once from the working tree (build isolation fetches hatchling)."""
    out = tmp_path_factory.mktemp("wheel")
    proc = run_command(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        cwd=out,
        env=Venv(Path(sys.prefix)).env(),
        timeout=300,
    )
    assert proc.returncode == 0, f"building the wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (wheel,) = out.glob("servekit-*.whl")
    return wheel


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory: pytest.TempPathFactory, servekit_wheel: Path) -> Venv:
    """A fresh venv with ``servekit[all]`` from the wheel (not editable), Django and pytest."""
    return _build_venv(
        tmp_path_factory.mktemp("venv-all") / "venv",
        [f"{servekit_wheel}[all]", "django>=4.2", "pytest"],
    )


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory: pytest.TempPathFactory, servekit_wheel: Path) -> Venv:
    """A fresh venv with servekit's wheel and no extras (so no gevent, eventlet, tornado, flask)."""
    return _build_venv(tmp_path_factory.mktemp("venv-bare") / "venv", [str(servekit_wheel)])


# --- HTTP -------------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP response, read whole."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")


def http_request(
    url: str,
    method: str = "GET",
    path: str = "/",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Reply:
    """Send one request to ``url`` (``http://127.0.0.1:PORT``) on a new connection."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def _answers(port: int, path: str) -> bool:
    try:
        http_request(f"http://127.0.0.1:{port}", path=path, timeout=3.0)
    except (OSError, http.client.HTTPException):
        return False
    return True


# --- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    """A command that serves HTTP on 127.0.0.1:``port``, in a process group of its own."""

    name: str
    argv: list[str]
    port: int
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    ready: bool = False
    returncode: int | None = field(default=None)

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        """Everything it has written to stdout so far."""
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything it has written to stderr so far."""
        return self.err_path.read_text(errors="replace")

    def log(self) -> str:
        """Its command, exit status and both streams, for failure messages."""
        return (
            f"$ {' '.join(self.argv)}\n(exit status: {self.proc.poll()})\n"
            f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"
        )

    def require(self) -> str:
        """The URL, or fail the test with the log of a server that never answered."""
        if not self.ready:
            pytest.fail(f"{self.name}: the server did not answer\n{self.log()}", pytrace=False)
        return self.url

    def get(self, path: str = "/", headers: dict[str, str] | None = None) -> Reply:
        """GET ``path`` from a server that answered (fails the test otherwise)."""
        return http_request(self.require(), "GET", path, headers=headers)


class ServerGroup:
    """Servers started side by side, waited for together and stopped together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: dict[str, Server] = {}
        self._ports: set[int] = set()

    def free_port(self) -> int:
        """A loopback port nothing listens on, distinct from the group's others."""
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self._ports:
                self._ports.add(port)
                return port

    def start(
        self, name: str, argv: list[str], port: int, cwd: Path, env: dict[str, str]
    ) -> Server:
        """Start ``argv`` from ``cwd`` with ``env``; it is expected to serve on ``port``."""
        out_path = self.log_dir / f"{name}.stdout"
        err_path = self.log_dir / f"{name}.stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        server = Server(name, argv, port, proc, out_path, err_path)
        self.servers[name] = server
        return server

    def wait_ready(self, path: str = "/", seconds: float = READY_SECONDS) -> None:
        """Poll every server until it answers any HTTP response on ``path``, exits, or time is up."""
        deadline = time.monotonic() + seconds
        waiting = [s for s in self.servers.values() if not s.ready]
        while waiting and time.monotonic() < deadline:
            for server in list(waiting):
                if server.proc.poll() is not None:
                    waiting.remove(server)
                elif _answers(server.port, path):
                    server.ready = True
                    waiting.remove(server)
            time.sleep(0.1)

    def stop(self, name: str | None = None, seconds: float = 15.0) -> None:
        """SIGTERM each server's group (or just ``name``'s), wait, then SIGKILL what is left."""
        servers = [self.servers[name]] if name else list(self.servers.values())
        for server in servers:
            if server.proc.poll() is None:
                _kill_group(server.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        for server in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(max(0.1, deadline - time.monotonic()))
            _kill_group(server.proc.pid, signal.SIGKILL)
            server.returncode = server.proc.wait(10)

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- projects ---------------------------------------------------------------------------

STREAM_CHUNKS = [f"chunk {i}\n".encode() for i in range(5)]
STREAM_PAUSE = 0.25

FLASK_WSGI = textwrap.dedent(
    '''
    """A user's Flask app: text, JSON, a file upload and a streamed response."""

    import hashlib
    import time

    from flask import Flask, Response, jsonify, request

    app = Flask(__name__)


    @app.get("/")
    def index():
        return "hello from myproject\\n"


    @app.post("/echo")
    def echo():
        return jsonify(request.get_json())


    @app.post("/upload")
    def upload():
        upload = request.files["file"]
        data = upload.read()
        return jsonify(
            filename=upload.filename,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            note=request.form.get("note"),
        )


    @app.get("/stream")
    def stream():
        def chunks():
            for i in range(5):
                if i:
                    time.sleep(PAUSE)
                yield f"chunk {i}\\n"

        return Response(chunks(), mimetype="text/plain")
    '''
).replace("PAUSE", repr(STREAM_PAUSE))


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root``; return ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture(scope="session")
def flask_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory holding the package ``myproject`` with ``myproject/wsgi.py``."""
    return write_files(
        tmp_path_factory.mktemp("flask-project"),
        {"myproject/__init__.py": "", "myproject/wsgi.py": FLASK_WSGI},
    )
