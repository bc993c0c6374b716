"""Running granian's WSGI server on servekit's own socket, with servekit's drain and logs.

What servekit changes in granian's behaviour (granian 2.8; the private names used are
pinned by the ``granian`` extra's version range and by tests/test_granian.py):

* one listening socket, bound by servekit, shared by every worker (granian's default is
  a SO_REUSEPORT socket per worker, which spreads a burst by hash, not by free threads),
  and each worker's connections capped at its threads, so ``workers x threads`` is what
  a burst really gets;
* SIGTERM/SIGINT close the socket's gate and let the workers serve what the kernel had
  queued before they are told to stop (granian reset those connections);
* stop signals are taken by one ``sigwaitinfo`` thread in the master and in each worker,
  and a worker obeys only its master: granian's handlers run on a main thread that may
  never wake, and Ctrl+C to the whole group could hang a worker forever;
* a crashed worker is replaced, and granian's log and access log come out through
  servekit's structlog logger.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.errors import ConfigError
from servekit.loading import load_app
from servekit.logs import get_logger
from servekit.sockets import BacklogWatch, bind_listener, close_gate

if TYPE_CHECKING:
    import socket

    from servekit.plan import Plan

__all__ = ["serve_granian"]

_STOP = {signal.SIGINT, signal.SIGTERM}


class LogBridge(logging.Handler):
    """granian's log records as servekit events; its access records as ``request`` events."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            if record.name == "granian.access" and isinstance(record.args, dict):
                self._access(record.args)
                return
            message = record.getMessage()
            level = "warning" if record.levelno >= logging.WARNING else "info"
            if record.levelno >= logging.ERROR:
                level = "error"
            getattr(get_logger(), level)(message, logger="granian")

    @staticmethod
    def _access(args: dict[str, Any]) -> None:
        get_logger().info(
            "request",
            method=args.get("method"),
            path=args.get("path") or "-",
            query=args.get("query_string", ""),
            status=args.get("status"),
            duration_ms=args.get("dt_ms"),
            pid=os.getpid(),
            remote=str(args.get("addr", "")).rsplit(":", 1)[0] or None,
            protocol=args.get("protocol"),
        )


def _log_config(level: str) -> dict[str, Any]:
    bridge = {"()": "servekit.backends.granian.runner.LogBridge"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"servekit": bridge},
        "loggers": {
            "_granian": {"handlers": ["servekit"], "propagate": False, "level": level.upper()},
            "granian.access": {"handlers": ["servekit"], "propagate": False, "level": "INFO"},
        },
    }


def _worker_signals(master: int) -> Any:
    """Replacement for granian's worker signal set-up: a sigwait thread obeying the master."""
    from granian._granian import WorkerSignal

    event = WorkerSignal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the group: the master decides
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        while True:
            info = signal.sigwaitinfo({signal.SIGTERM})
            if info.si_pid == master or os.getppid() != master:
                event.set()
                return

    threading.Thread(target=wait, name="servekit-signals", daemon=True).start()
    return event


def _server_class(listener: socket.socket, graceful: float) -> Any:
    from granian._granian import SocketHolder
    from granian.server import MPServer

    class ServekitGranian(MPServer):  # type: ignore[misc]
        _draining = False

        def _init_shared_socket(self) -> None:
            self._ssp = None
            self._shd = SocketHolder(listener.fileno(), False, self.backlog)  # type: ignore[call-arg]
            self._sfd = listener.fileno()
            self._sso = None

        def _drop_shared_socket(self) -> None:
            """servekit closes its own socket."""

        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            if self._draining:
                return
            self._draining = True
            get_logger().info("stopping", graceful_timeout=graceful)
            close_gate(listener)

            def drain() -> None:
                watch = BacklogWatch([listener], time.monotonic() + graceful)
                while watch.poll() is not None:
                    time.sleep(0.01)
                MPServer.signal_handler_interrupt(self)

            threading.Thread(target=drain, name="servekit-drain", daemon=True).start()

    return ServekitGranian


def _settings(plan: Plan) -> dict[str, Any]:
    from granian.http import HTTP1Settings

    cfg = plan.config
    threads = int(getattr(cfg, "threads"))  # noqa: B009
    keepalive = int(getattr(cfg, "keepalive"))  # noqa: B009
    http1 = HTTP1Settings(
        keep_alive=keepalive > 0, header_read_timeout=max(1, keepalive or 10) * 1000
    )
    settings: dict[str, Any] = {
        "interface": "wsgi",
        "http": "1",
        "workers": int(getattr(cfg, "workers")),  # noqa: B009
        "blocking_threads": threads,
        "backpressure": threads,
        "backlog": max(128, int(cfg.backlog or 2048)),
        "http1_settings": http1,
        "websockets": False,
        "respawn_failed_workers": True,
        "workers_kill_timeout": int(cfg.graceful_timeout or 30),
        "log_dictconfig": _log_config(str(cfg.log_level)),
        "log_level": str(cfg.log_level),
        "log_access": bool(cfg.access_log),
    }
    if cfg.certfile and cfg.keyfile:
        settings.update(ssl_cert=Path(cfg.certfile), ssl_key=Path(cfg.keyfile))
        settings["ssl_protocol_min"] = "tls1.2"
    return settings


def serve_granian(plan: Plan) -> int:
    """Serve ``plan`` with granian until SIGTERM/SIGINT, then drain; return the exit status.

    Raises:
        ConfigError: the address cannot be bound, or the app fails to import in a worker.
    """
    import granian._signals as granian_signals

    from servekit.run import announce

    multiprocessing.set_start_method("fork", force=True)  # the socket and app objects are inherited
    listener = bind_listener(plan)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    master = os.getpid()
    failed_r, failed_w = os.pipe()
    booted_r, booted_w = os.pipe()
    granian_signals.set_sync_signals = lambda: _worker_signals(master)

    def loader() -> Any:
        try:
            app = load_app(plan.app)
            with contextlib.suppress(OSError):
                os.write(booted_w, b"1")
            return app
        except ConfigError as error:
            os.write(failed_w, error.message.encode()[: select.PIPE_BUF])
            os._exit(0)  # quietly: the master prints the message once and stops

    cfg = plan.config
    server = _server_class(listener, float(cfg.graceful_timeout or 30))(
        "servekit:app", address=str(plan.address[0]), port=port, **_settings(plan)
    )
    failure: list[str] = []

    def watch_boot() -> None:
        if os.read(booted_r, 1):
            announce(plan, port)  # a worker has loaded the app

    def watch_failures() -> None:
        data = os.read(failed_r, select.PIPE_BUF)
        if data:
            failure.append(data.decode("utf-8", "replace"))
            server.signal_handler_interrupt()

    def take_signals() -> None:
        while True:
            signal.sigwaitinfo(_STOP)
            server.signal_handler_interrupt()

    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
    for target in (watch_failures, watch_boot, take_signals):
        threading.Thread(target=target, daemon=True, name=f"servekit-{target.__name__}").start()
    code = 0
    try:
        server.serve(target_loader=loader, wrap_loader=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)
        with contextlib.suppress(OSError):
            listener.close()
    if failure:
        raise ConfigError(failure[0], option="app")
    get_logger().info("stopped", pid=os.getpid())
    return code
