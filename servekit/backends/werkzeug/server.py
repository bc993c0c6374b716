"""Running werkzeug's server classes with a graceful drain and structured logs."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any

from werkzeug.serving import (
    BaseWSGIServer,
    ForkingWSGIServer,
    ThreadedWSGIServer,
    is_running_from_reloader,
)

from servekit import metrics
from servekit.access import TrustedProxies
from servekit.backends.werkzeug.deadlines import client_limits
from servekit.backends.werkzeug.handler import Handler, linger
from servekit.backends.werkzeug.head import DEFAULT_TRUSTED, Trust
from servekit.backends.werkzeug.reload import load_for_reload
from servekit.loading import load_app
from servekit.logs import get_logger
from servekit.sockets import BacklogWatch, bind_listener, close_gate

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["serve_werkzeug"]

_IDLE_POLL_SECONDS = 0.01


class _Draining:
    """What the three server classes share: structured errors and the drain on stop."""

    socket: socket.socket

    def log(self, type: str, message: str, *args: Any) -> None:
        text = (message % args) if args else message
        getattr(get_logger(), "error" if type == "error" else "info")("werkzeug", message=text)

    def shutdown_request(self, request: Any) -> None:
        """Close a served connection without a reset (see :func:`~.handler.linger`)."""
        linger(request)
        self.close_request(request)  # type: ignore[attr-defined]

    if TYPE_CHECKING:

        def _handle_request_noblock(self) -> None: ...

    def requests_in_flight(self) -> int:
        return 0

    def stop_in_flight(self) -> None:
        """Forcefully end what is still running once the graceful timeout is over."""

    def drain(self, deadline: float) -> int:
        """Serve the queued connections, wait for requests in flight; return how many were cut off.

        The listener's gate closes first (:func:`~servekit.sockets.close_gate`): new
        connection attempts are not answered, and meet a closed port once the server
        is gone (refused, retryable), while handshakes already under way still queue.
        Then every queued connection is served, until the queue stays empty.
        """
        close_gate(self.socket)
        watch = BacklogWatch([self.socket], deadline)
        while (ready := watch.poll()) is not None:
            if ready:
                self._handle_request_noblock()
            else:
                time.sleep(_IDLE_POLL_SECONDS)
        while self.requests_in_flight() and time.monotonic() < deadline:
            time.sleep(0.02)
        left = self.requests_in_flight()
        if left:
            self.stop_in_flight()
        return left


class _Single(_Draining, BaseWSGIServer):
    pass


class _Threaded(_Draining, ThreadedWSGIServer):
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._inflight = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._inflight += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._lock:
                self._inflight -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._inflight -= 1

    def requests_in_flight(self) -> int:
        return self._inflight


class _Forking(_Draining, ForkingWSGIServer):
    block_on_close = False

    def requests_in_flight(self) -> int:
        self.collect_children()
        return len(self.active_children or ())

    def process_request(self, request: Any, client_address: Any) -> None:
        """Fork for the request; with ``metrics``, the child writes a slot of its own."""
        exporter = metrics.active()
        if exporter is None:
            super().process_request(request, client_address)
            return
        slot = exporter.counters.free_slot()
        exporter.next_slot = slot
        before = set(self.active_children or ())
        super().process_request(request, client_address)
        for pid in set(self.active_children or ()) - before:
            if slot is not None:
                exporter.counters.own(slot, pid)

    def collect_children(self, *, blocking: bool = False) -> None:
        before = set(self.active_children or ())
        super().collect_children(blocking=blocking)
        exporter = metrics.active()
        if exporter is not None:
            for pid in before - set(self.active_children or ()):
                exporter.counters.retire(pid)

    def stop_in_flight(self) -> None:
        for pid in list(self.active_children or ()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.collect_children(blocking=True)


class _WerkzeugLogBridge(logging.Handler):
    """Sends what werkzeug logs through its stdlib logger (reloader notices) to structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        getattr(get_logger(), level)("werkzeug", message=record.getMessage().strip())


def _make_server(plan: Plan, app: Any, fd: int) -> Any:
    cfg = plan.config
    address = plan.address
    host, port = (f"unix://{address}", 0) if isinstance(address, str) else address
    ssl_context = (cfg.certfile, cfg.keyfile) if cfg.certfile else None
    Handler.access_log = bool(cfg.access_log)
    fields = cfg.access_log_fields
    Handler.access_headers = tuple(fields.split(",")) if fields else ()
    allowed = getattr(cfg, "forwarded_allow_ips", None) or DEFAULT_TRUSTED
    Handler.access_trust = TrustedProxies(allowed)
    Handler.trust = Trust(allowed)
    Handler.limits = client_limits(cfg)
    if plan.strategy == "threaded":
        return _Threaded(host, port, app, Handler, False, ssl_context, fd=fd)
    if plan.strategy == "processes":
        workers: int = getattr(cfg, "workers")  # noqa: B009
        return _Forking(host, port, app, workers, Handler, False, ssl_context, fd=fd)
    return _Single(host, port, app, Handler, False, ssl_context, fd=fd)


_DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_IGNORED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_IGNORED_WHY = "the development server has no reload or log reopening; SIGTERM drains"


class _Stop:
    """The main process's signal handling: TERM, INT and QUIT drain; HUP, USR1, USR2 are
    logged and ignored (their default would end the process with requests in flight)."""

    def __init__(self, server: Any, graceful_timeout: int | None, exporter: Any) -> None:
        self.server = server
        self.graceful_timeout = graceful_timeout
        self.exporter = exporter
        self.stopping = threading.Event()
        self.deadline = float("inf")
        self.owner = os.getpid()

    def install(self) -> dict[int, Any]:
        """Install the handlers; return the previous ones."""
        previous: dict[int, Any] = {s: signal.signal(s, self.on_signal) for s in _DRAIN_SIGNALS}
        previous.update({s: signal.signal(s, self.on_ignored) for s in _IGNORED_SIGNALS})
        return previous

    def on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.owner:
            return  # a forked request handler: let it finish its request
        if self.stopping.is_set():
            self.deadline = time.monotonic()  # a second signal: stop waiting
            return
        self.stopping.set()
        if self.exporter is not None:
            self.exporter.draining = True
        self.deadline = time.monotonic() + float(self.graceful_timeout or 30)
        get_logger().info(
            "stopping", signal=signal.Signals(signum).name, graceful_timeout=self.graceful_timeout
        )
        threading.Thread(target=self.server.shutdown, name="servekit-stop", daemon=True).start()

    def on_ignored(self, signum: int, frame: Any) -> None:
        if os.getpid() == self.owner:
            get_logger().info(
                "signal ignored", signal=signal.Signals(signum).name, reason=_IGNORED_WHY
            )


def serve_werkzeug(plan: Plan) -> int:
    """Serve ``plan`` with werkzeug until SIGTERM/SIGINT, then drain; return the exit status.

    Raises:
        ConfigError: the app cannot be loaded or the address cannot be bound.
    """
    from servekit.run import announce

    log = get_logger()
    cfg = plan.config
    app, watch = load_for_reload(plan) if cfg.reload else (load_app(plan.app), [])
    if getattr(cfg, "debug", False):
        from werkzeug.debug import DebuggedApplication

        debugged = DebuggedApplication(app, evalex=True)
        address = plan.address
        if isinstance(address, tuple):
            debugged.trusted_hosts.append(address[0])
        app = debugged
    bridge = _WerkzeugLogBridge()
    werkzeug_logger = logging.getLogger("werkzeug")
    werkzeug_logger.addHandler(bridge)
    werkzeug_logger.propagate = False
    werkzeug_logger.setLevel(logging.INFO)

    if cfg.reload:
        return _serve_with_reloader(plan, app, watch)

    exporter = metrics.active()
    app = metrics.wrap(app)
    listener = bind_listener(plan)
    server = _make_server(plan, app, listener.fileno())
    listener.close()  # the server holds its own duplicate
    if exporter is not None:
        exporter.sources.listeners = lambda: [server.socket]
    announce(plan, server.port if not isinstance(plan.address, str) else None)

    stop = _Stop(server, cfg.graceful_timeout, exporter)
    previous = stop.install()
    try:
        socketserver.BaseServer.serve_forever(server, poll_interval=0.1)
        cut = server.drain(stop.deadline) if stop.stopping.is_set() else 0
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        werkzeug_logger.removeHandler(bridge)
    if cut:
        log.warning("stopped", requests_cut_off=cut, reason="graceful_timeout")
    else:
        log.info("stopped", pid=os.getpid())
    return 0


def _serve_with_reloader(plan: Plan, app: Any, watch: list[str]) -> int:
    """``reload``: werkzeug's reloader restarts a child process that serves (as ``run_simple``)."""
    from werkzeug._reloader import run_with_reloader

    from servekit.run import announce

    if is_running_from_reloader():
        fd = int(os.environ["WERKZEUG_SERVER_FD"])
    else:
        listener = bind_listener(plan)
        fd = listener.fileno()
        os.environ["WERKZEUG_SERVER_FD"] = str(fd)
    server = _make_server(plan, app, fd)
    server.socket.set_inheritable(True)
    os.environ["WERKZEUG_SERVER_FD"] = str(server.fileno())
    if not is_running_from_reloader():
        announce(plan, server.port if not isinstance(plan.address, str) else None)
    try:
        run_with_reloader(server.serve_forever, extra_files=watch)
    finally:
        server.server_close()
    return 0
