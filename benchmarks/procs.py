"""Servers as process groups: start, wait until they answer, measure, stop.

Every server starts in a new session (``start_new_session=True``), so its master and
workers share a process group whose id is the leader's pid; it is stopped with
SIGTERM to the leader, then SIGKILL to that group only.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "GroupSample",
    "Server",
    "ServerSpec",
    "free_port",
    "http_get",
    "idle_cpu_seconds",
    "start_all",
    "stop_all",
]

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> int:
    """GET ``path`` on 127.0.0.1:``port``; the status, or 0 when nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: a label, the command line and its intended capacity."""

    key: str
    label: str
    argv: tuple[str, ...]
    #: requests served at once (None: unbounded / limited by the CPU only)
    capacity: int | None
    #: processes that can run Python at the same time (for the CPU-bound limit)
    processes: int
    env: tuple[tuple[str, str], ...] = ()

    def command(self, port: int) -> list[str]:
        """The command line with ``{port}`` filled in."""
        return [arg.replace("{port}", str(port)) for arg in self.argv]

    def shell(self) -> str:
        """The command as a person would type it (``PORT`` stands for the port)."""
        prefix = " ".join(f"{k}={v}" for k, v in self.env)
        words = [_short(arg).replace("{port}", "$PORT") for arg in self.argv]
        return f"{prefix} {' '.join(words)}".strip()


def _short(arg: str) -> str:
    """Show venv executables by their plain name."""
    if arg.startswith(str(ROOT / ".venv" / "bin")):
        return Path(arg).name
    return arg


@dataclass
class GroupSample:
    """CPU time (all processes of the group, plus reaped children) and memory."""

    cpu_seconds: float
    rss_bytes: int
    pss_bytes: int
    processes: int
    #: CPU seconds of each live process (its own, without reaped children)
    per_pid: dict[int, float] = field(default_factory=dict)


@dataclass
class Server:
    """A running server started from a :class:`ServerSpec`."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    ready_after: float = field(default=0.0)

    @classmethod
    def start(cls, spec: ServerSpec, log_dir: Path, port: int | None = None) -> Server:
        """Start ``spec`` on ``port`` (a free one by default), without waiting for it."""
        port = free_port() if port is None else port
        log_path = log_dir / f"{spec.key}-{port}.log"
        env = dict(os.environ)
        env.update(dict(spec.env))
        env["PYTHONUNBUFFERED"] = "1"
        for var in ("PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS"):
            env.pop(var, None)
        for var in list(env):
            if var.startswith("SERVEKIT_"):
                env.pop(var)
        with log_path.open("wb") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                spec.command(port),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(spec, port, process, log_path, started)

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.005) -> float:
        """Poll ``GET /`` until it answers 200; return seconds since the process started.

        Raises:
            RuntimeError: the server exited or did not answer within ``timeout``.
        """
        deadline = self.started_at + timeout
        while True:
            if http_get(self.port, "/", timeout=1.0) == 200:
                self.ready_after = time.perf_counter() - self.started_at
                return self.ready_after
            if self.process.poll() is not None or time.perf_counter() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                msg = f"{self.spec.label} did not start (exit {self.process.poll()}):\n{tail}"
                raise RuntimeError(msg)
            time.sleep(interval)

    def wait_idle(self, timeout: float = 90.0) -> float:
        """Wait until a fresh request is answered (what earlier loads queued is done).

        Returns the seconds it took; a server that cannot answer within ``timeout``
        raises :class:`RuntimeError`.
        """
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if http_get(self.port, "/", timeout=timeout) == 200:
                return time.perf_counter() - started
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        msg = f"{self.spec.label} stopped answering"
        raise RuntimeError(msg)

    def pids(self) -> list[int]:
        """Every live process of the server's process group, leader first."""
        leader = self.process.pid
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = _read_stat(int(entry))
            if stat is not None and int(stat[2]) == leader:  # field 5: pgrp
                found.append(int(entry))
        return sorted(found, key=lambda pid: (pid != leader, pid))

    def sample(self) -> GroupSample:
        """CPU seconds used so far by the group (reaped children included) and its memory."""
        cpu = 0.0
        rss = pss = 0
        per_pid: dict[int, float] = {}
        pids = self.pids()
        for pid in pids:
            stat = _read_stat(pid)
            if stat is None:
                continue
            # fields 14-17 (utime, stime, cutime, cstime) are at 11..14 after the name
            own = (int(stat[11]) + int(stat[12])) / CLK_TCK
            per_pid[pid] = own
            cpu += own + (int(stat[13]) + int(stat[14])) / CLK_TCK
            rss += _status_kib(pid, "VmRSS") * 1024
            pss += _rollup_kib(pid, "Pss") * 1024
        return GroupSample(cpu, rss, pss, len(pids), per_pid)

    def memory(self) -> list[tuple[int, int, int]]:
        """``(pid, rss_bytes, pss_bytes)`` for each process of the group, leader first."""
        return [
            (pid, _status_kib(pid, "VmRSS") * 1024, _rollup_kib(pid, "Pss") * 1024)
            for pid in self.pids()
        ]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the leader, wait, then SIGKILL whatever is left of its group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def start_all(specs: list[ServerSpec], log_dir: Path, servers: list[Server]) -> None:
    """Start every spec and wait until each answers; each is added to ``servers`` as it
    starts, so the caller's ``finally: stop_all(servers)`` also stops a partial start."""
    for spec in specs:
        server = Server.start(spec, log_dir)
        servers.append(server)
        server.wait_ready()


def stop_all(servers: list[Server], timeout: float = 10.0) -> None:
    """SIGTERM every server at once, wait up to ``timeout`` in all, then SIGKILL their groups."""
    for server in servers:
        if server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for server in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(max(0.1, deadline - time.monotonic()))
        server.stop(timeout=0.1)


def idle_cpu_seconds() -> float:
    """Seconds all CPUs of the machine have spent idle since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    # cpu user nice system idle iowait ...
    return (int(fields[4]) + int(fields[5])) / CLK_TCK


def _read_stat(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` split after the command name (index 0 is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _rollup_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
