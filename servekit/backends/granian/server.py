"""granian's master, as servekit runs it: servekit's socket, servekit's drain, metered workers.

* **One accept queue.** granian binds a SO_REUSEPORT socket per worker, and the kernel
  spreads connections over them by hash, not by free threads: a burst of 2 x capacity
  took three rounds. servekit's own listening socket is handed to every worker instead
  (granian has no public API for it: ``_init_shared_socket`` is overridden), and each
  worker takes at most ``threads`` connections (``backpressure``), so a burst really
  gets ``workers x threads`` at once.
* **The drain.** On SIGTERM/SIGINT the master closes the socket's gate (new connections
  are not answered; see :func:`servekit.sockets.close_gate`), waits until the workers
  have accepted what the kernel had queued, and only then tells them to stop, with what
  is left of ``graceful_timeout`` (granian reset the queued connections).
* **Metering.** Workers get a slot of the shared counters (``metrics`` option).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.backends.granian.metering import Metering
from servekit.logs import get_logger
from servekit.sockets import BacklogWatch, close_gate

if TYPE_CHECKING:
    import socket

    from servekit.plan import Plan

__all__ = ["Stopper", "granian_options", "server_class"]

#: the header read timeout when header_timeout is not given, in seconds
HEADER_TIMEOUT_WITHOUT_KEEPALIVE = 10.0
#: the least time workers get to finish their requests, even when the drain took it all
MIN_WORKER_STOP_SECONDS = 1.0


def granian_options(plan: Plan) -> dict[str, Any]:
    """granian ``Server`` keyword arguments for ``plan`` (the address comes from the socket)."""
    from granian.http import HTTP1Settings

    cfg = plan.config
    threads = int(getattr(cfg, "threads"))  # noqa: B009 - GranianConfig has it
    keepalive = int(getattr(cfg, "keepalive"))  # noqa: B009
    given = getattr(cfg, "header_timeout", None)
    head = HEADER_TIMEOUT_WITHOUT_KEEPALIVE if given is None else float(given)
    # hyper's one timer covers the wait for a head, and on a kept-alive connection the
    # idle wait before it: the shorter of the two limits
    header_seconds = min(keepalive, head) if keepalive else head
    options: dict[str, Any] = {
        "interface": "wsgi",
        "http": "1",  # no h2c by prior knowledge: gunicorn speaks HTTP/1.x only
        "workers": int(getattr(cfg, "workers")),  # noqa: B009
        "blocking_threads": threads,
        "backpressure": threads,
        "blocking_threads_idle_timeout": 600,  # keep the app's thread-locals (granian: 30 s)
        "runtime_threads": 1,
        "backlog": max(128, int(cfg.backlog or 2048)),  # granian's minimum; the socket has ours
        "http1_settings": HTTP1Settings(
            keep_alive=keepalive > 0, header_read_timeout=max(1, round(header_seconds * 1000))
        ),
        "websockets": False,
        "respawn_failed_workers": True,
        "workers_kill_timeout": int(cfg.graceful_timeout or 30),
        "log_level": str(cfg.log_level),
        "log_access": False,  # servekit logs each request itself
    }
    if cfg.certfile and cfg.keyfile:
        options.update(
            ssl_cert=Path(cfg.certfile), ssl_key=Path(cfg.keyfile), ssl_protocol_min="tls1.2"
        )
    return options


class Stopper:
    """The graceful stop: gate, backlog drain, then granian's own stop of the workers."""

    def __init__(self, listener: socket.socket, graceful: float, metering: Metering) -> None:
        self.listener = listener
        self.graceful = graceful
        self.metering = metering
        self.started = False
        self._lock = threading.Lock()

    def stop(self, server: Any, then: Callable[[], None], why: str) -> None:
        """Begin the stop (once; later calls do nothing); ``then`` is granian's own stop."""
        with self._lock:
            if self.started:
                return
            self.started = True
        self.metering.draining()
        if why != "app failed":  # that stop ends with the error line alone
            get_logger().info("stopping", signal=why, graceful_timeout=round(self.graceful))
        close_gate(self.listener)
        thread = threading.Thread(
            target=self._drain, args=(server, then), name="servekit-drain", daemon=True
        )
        thread.start()

    def _drain(self, server: Any, then: Callable[[], None]) -> None:
        deadline = time.monotonic() + self.graceful
        watch = BacklogWatch([self.listener], deadline)
        while watch.poll() is not None:
            time.sleep(0.01)
        # granian reads this when it stops the workers: the rest of the budget.
        server.workers_kill_timeout = max(MIN_WORKER_STOP_SECONDS, deadline - time.monotonic())
        then()


def server_class() -> type[Any]:
    """granian's ``MPServer`` with servekit's socket, stop and metering (see the module doc)."""
    from granian._granian import SocketHolder
    from granian.server.mp import MPServer

    class ServekitGranian(MPServer):  # type: ignore[misc]
        """Set ``listener``, ``unix``, ``backlog``, ``shown``, ``stopper``, ``metering`` first."""

        listener: socket.socket
        unix: bool
        listen_backlog: int
        shown: str
        stopper: Stopper
        metering: Metering

        @property
        def _bind_addr_fmt(self) -> str:
            return self.shown

        def _init_shared_socket(self) -> None:
            fd = self.listener.fileno()
            self._ssp = None
            self._shd = SocketHolder(fd, self.unix, self.listen_backlog)  # type: ignore[call-arg]
            self._sfd = fd
            self._sso = None
            self.metering.watch(self.wrks)

        def _drop_shared_socket(self) -> None:
            """servekit closes its own socket, after the workers have stopped."""

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            self.stop_gracefully("SIGTERM")

        def stop_gracefully(self, why: str) -> None:
            """Drain, then stop (servekit's signal thread calls this)."""
            self.stopper.stop(self, lambda: MPServer.signal_handler_interrupt(self), why)

        def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:
            worker = super()._spawn_worker(idx, target, callback_loader)
            start, metering = worker.start, self.metering

            def start_metered() -> None:
                metering.before_fork()
                start()
                metering.after_fork(worker.inner.pid)

            worker.start = start_metered
            return worker

        def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> None:
            gone = [self.wrks[idx] for idx in workers]
            super()._respawn_workers(workers, *args, **kwargs)
            for worker in gone:
                self.metering.ended(worker.inner.pid, worker.inner.exitcode)

        def _stop_workers(self) -> None:
            gone = list(self.wrks)
            super()._stop_workers()
            for worker in gone:
                self.metering.ended(worker.inner.pid, worker.inner.exitcode)

    return ServekitGranian
