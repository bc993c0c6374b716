"""The ``metrics`` listener: Prometheus text at ``/metrics``, readiness at ``/ready``.

It runs in the master (gunicorn) or the main process (werkzeug) on a thread of its
own, on its own socket, so the app's port and its capacity are untouched. It also
watches for saturation: in flight at capacity (not counting the requests that wait on
their clients without a thread) with connections waiting in the kernel's queue for
longer than :data:`SATURATION_SECONDS` logs one ``saturated`` event with advice, and
``recovered`` when it ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from servekit.addresses import parse_bind
from servekit.errors import ConfigError
from servekit.logs import get_logger
from servekit.metrics.counters import Counters, SlotWriter

__all__ = ["RESTART_REASONS", "SATURATION_SECONDS", "Exporter", "listen_queue"]

SATURATION_SECONDS = 3.0
#: at most one ``saturated`` event in this many seconds
SATURATION_REPEAT_SECONDS = 30.0
_WATCH_INTERVAL = 0.25
_READ_TIMEOUT = 2.0
RESTART_REASONS = ("exit", "error", "signal")


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """``(queued, limit)`` of a listening TCP socket (Linux ``TCP_INFO``), else ``None``.

    On a listening socket the kernel reports the accept queue's length in
    ``tcpi_unacked`` and its limit in ``tcpi_sacked`` (what ``ss -lnt`` shows).
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    unacked, sacked = struct.unpack_from("II", info, 24)
    return unacked, sacked


@dataclass
class Sources:
    """What the backend tells the exporter: its listeners and its live workers."""

    listeners: Callable[[], list[socket.socket]] = list
    workers: Callable[[], int] = lambda: 1
    restarts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESTART_REASONS, 0))


class Exporter:
    """Serves the counters of one server; made by :func:`servekit.metrics.start`."""

    def __init__(
        self,
        sock: socket.socket,
        counters: Counters,
        labels: dict[str, str],
        capacity: int | None,
        advice: str,
    ) -> None:
        self.sock = sock
        self.counters = counters
        self.labels = labels
        self.capacity = capacity
        self.advice = advice
        self.sources = Sources()
        self.ready = False
        self.draining = False
        #: the slot a worker forked now will write (set by the master before the fork)
        self.next_slot: int | None = 0
        self._writer: SlotWriter | None = None
        self._writer_pid = 0
        self._owner = os.getpid()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saturated_since: float | None = None
        self._episode = False
        self._last_event = -math.inf

    @classmethod
    def bind(cls, address: str) -> socket.socket:
        """The exporter's listening socket.

        Raises:
            ConfigError: the address cannot be bound (option ``metrics``).
        """
        where = parse_bind(address)
        try:
            if isinstance(where, str):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(where)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(where)
                sock.listen(16)
                return sock
            host, port = where
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            return socket.create_server((host, port), family=family, backlog=16)
        except OSError as exc:
            msg = f"option 'metrics' ({address!r}): cannot listen there: {exc.strerror or exc}"
            raise ConfigError(msg, option="metrics") from None

    # -- in the process that serves requests ---------------------------------------

    def writer(self) -> SlotWriter | None:
        """This process's slot writer (a forked worker's is the slot chosen for it)."""
        pid = os.getpid()
        if self._writer is None or self._writer_pid != pid:
            slot = self.next_slot
            self._writer = None if slot is None else self.counters.writer(slot)
            self._writer_pid = pid
        return self._writer

    def in_worker(self) -> None:
        """In a forked worker: let go of the exporter's socket (only the master serves it)."""
        if os.getpid() != self._owner:
            with contextlib.suppress(OSError):
                self.sock.close()

    # -- in the master -------------------------------------------------------------

    def start(self) -> None:
        """Serve scrapes and watch for saturation on threads of their own."""
        for target, name in ((self._serve, "servekit-metrics"), (self._watch, "servekit-saturation")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        path = self._unix_path()
        with contextlib.suppress(OSError):
            self.sock.close()
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _unix_path(self) -> str | None:
        try:
            name = self.sock.getsockname()
        except OSError:
            return None
        return name if isinstance(name, str) and name and os.getpid() == self._owner else None

    def queue(self) -> tuple[int, int] | None:
        """Connections waiting in the listeners' accept queues, and their limit."""
        found = [q for q in (listen_queue(s) for s in self.sources.listeners()) if q is not None]
        if not found:
            return None
        return sum(q[0] for q in found), sum(q[1] for q in found)

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        from servekit.metrics.text import render

        snap = self.counters.snapshot()
        return render(self, snap)

    def _serve(self) -> None:
        self.sock.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(_READ_TIMEOUT)
        head = b""
        while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < 16384:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        line = head.split(b"\n", 1)[0].decode("latin-1").split()
        path = line[1].split("?", 1)[0] if len(line) >= 2 else ""
        if len(line) < 2 or line[0] not in ("GET", "HEAD"):
            status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
        elif path == "/metrics":
            status, kind = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
            body = self.render().encode()
        elif path == "/ready":
            ok = self.ready and not self.draining
            status = "200 OK" if ok else "503 Service Unavailable"
            body = b"ready\n" if ok else (b"draining\n" if self.draining else b"starting\n")
            kind = "text/plain"
        else:
            status, body, kind = "404 Not Found", b"try /metrics or /ready\n", "text/plain"
        payload = b"" if line and line[0] == "HEAD" else body
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + payload
        )

    def _watch(self) -> None:
        while not self._stop.wait(_WATCH_INTERVAL):
            with contextlib.suppress(Exception):  # a watcher must never take the server down
                self.check_saturation(time.monotonic())

    def check_saturation(self, now: float) -> None:
        """Log ``saturated`` / ``recovered`` when the state has held long enough."""
        if self.capacity is None:
            return
        snap = self.counters.snapshot()
        in_flight, waiting = snap["in_flight"], snap["away"]
        queue = self.queue()
        queued = queue[0] if queue else 0
        # A request waiting on its client without a thread (gthread, tornado) takes none
        # of the capacity: the worker accepts the next one meanwhile.
        if in_flight - waiting >= self.capacity and queued > 0:
            if self._saturated_since is None:
                self._saturated_since = now
            held = now - self._saturated_since
            if not self._episode and held >= SATURATION_SECONDS:
                self._episode = True
                if now - self._last_event >= SATURATION_REPEAT_SECONDS:
                    self._last_event = now
                    get_logger().warning(
                        "saturated",
                        capacity=self.capacity,
                        in_flight=in_flight,
                        waiting_on_clients=waiting,
                        queued=queued,
                        seconds=round(held, 1),
                        advice=self.advice,
                        **self.labels,
                    )
                else:
                    self._episode = False  # rate-limited: this episode is not reported
            return
        self._saturated_since = None
        if self._episode:
            self._episode = False
            get_logger().info(
                "recovered", capacity=self.capacity, in_flight=in_flight, queued=queued, **self.labels
            )
