"""``serve_granian``: the granian strategy's run, from a resolved plan to an exit status.

The master binds the socket, puts servekit's replacements into granian (``patches.py``),
takes the stop signals on a thread of its own (``signals.py``) and runs granian's
``serve()`` in the main thread, which granian requires. Each worker, after the fork,
imports the app (an import string is never imported in the master), wraps it for
``metrics``, and says on a pipe that it booted or why it could not: the master logs
``serving`` on the first boot, and on a failure prints servekit's one line and stops
with exit status 2, as the gunicorn strategies do.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import select
import threading
from typing import TYPE_CHECKING, Any

from servekit import metrics
from servekit.access import TrustedProxies
from servekit.backends.granian import patches, signals
from servekit.backends.granian.environ import RequestPolicy
from servekit.backends.granian.logs import configure_granian_logging, mute_granian_logging
from servekit.backends.granian.metering import Metering
from servekit.backends.granian.server import Stopper, granian_options, server_class
from servekit.backends.granian.wsgi import AccessLog, make_handler
from servekit.errors import ConfigError
from servekit.loading import load_app
from servekit.logs import get_logger
from servekit.sockets import bind_listener, release_listener

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from servekit.plan import Plan

__all__ = ["serve_granian"]


class Boot:
    """Two pipes from the workers to the master: "app loaded", and "app failed: why"."""

    def __init__(self) -> None:
        self.booted_r, self.booted_w = os.pipe()
        self.failed_r, self.failed_w = os.pipe()
        self.failure: str | None = None

    def load(self, app: Any) -> Callable[..., Any]:
        """In a worker: the app, loaded and metered; on failure, report it and leave quietly."""
        exporter = metrics.active()
        if exporter is not None:
            exporter.in_worker()
        try:
            loaded = metrics.wrap(load_app(app))
        except ConfigError as error:
            line = " ".join(error.message.split("\n")).encode("utf-8", "replace")
            with contextlib.suppress(OSError):  # one line each: workers may fail at once
                os.write(self.failed_w, line[: select.PIPE_BUF - 1] + b"\n")
            os._exit(0)  # the master prints the message, once, and stops
        with contextlib.suppress(OSError):
            os.write(self.booted_w, b"1")
        wsgi: Callable[..., Any] = loaded
        return wsgi

    def watch(self, on_boot: Callable[[], None], on_failure: Callable[[], None]) -> None:
        """In the master: call ``on_boot`` after the first boot, ``on_failure`` on a failure."""

        def booted() -> None:
            if os.read(self.booted_r, 1):
                on_boot()

        def failed() -> None:
            data = os.read(self.failed_r, select.PIPE_BUF)
            if data:
                self.failure = data.decode("utf-8", "replace").split("\n", 1)[0]
                on_failure()

        for target in (booted, failed):
            threading.Thread(target=target, name=f"servekit-{target.__name__}", daemon=True).start()


def _make_server(plan: Plan, listener: socket.socket) -> Any:
    cfg = plan.config
    address = plan.address
    unix = isinstance(address, str)
    server = server_class()(
        plan.app if isinstance(plan.app, str) else "app",
        address="127.0.0.1" if unix else str(address[0]),
        port=0 if unix else listener.getsockname()[1],
        **granian_options(plan),
    )
    server.listener = listener
    server.unix = unix
    server.listen_backlog = int(cfg.backlog or 2048)
    url = plan.url(None if unix else listener.getsockname()[1])
    server.shown = url.split("://", 1)[-1]
    server.metering = Metering(listener)
    server.stopper = Stopper(listener, float(cfg.graceful_timeout or 30), server.metering)
    return server


def _handler_factory(plan: Plan) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Builds, in each worker, the per-request callable around the loaded app."""
    cfg = plan.config
    trusted = TrustedProxies(getattr(cfg, "forwarded_allow_ips", None) or "127.0.0.1,::1")
    workers = int(getattr(cfg, "workers"))  # noqa: B009 - GranianConfig has it
    max_body = getattr(cfg, "max_body_size", None)
    policy = RequestPolicy(
        trusted,
        multiprocess=workers > 1,
        unix=isinstance(plan.address, str),
        max_body=1 << 30 if max_body is None else int(max_body),
    )
    fields = cfg.access_log_fields
    extra = tuple(fields.split(",")) if fields else ()

    def factory(app: Callable[..., Any]) -> Callable[..., Any]:
        return make_handler(app, policy, AccessLog(bool(cfg.access_log), trusted, extra))

    return factory


def serve_granian(plan: Plan) -> int:
    """Serve ``plan`` with granian until SIGTERM/SIGINT, then drain; return the exit status.

    Raises:
        ConfigError: the address cannot be bound, or the app fails to import in a worker.
    """
    from servekit.run import announce

    listener = bind_listener(plan)
    port = None if isinstance(plan.address, str) else listener.getsockname()[1]
    boot, master = Boot(), os.getpid()
    start_method = multiprocessing.get_start_method(allow_none=True)
    # The socket and an app object reach the workers by inheritance: fork, never spawn.
    multiprocessing.set_start_method("fork", force=True)
    code = 0
    try:
        with patches.installed(
            lambda: signals.worker_stop_event(master),
            _handler_factory(plan),
            configure_granian_logging,
        ):
            server = _make_server(plan, listener)
            with signals.master_signals(server.stop_gracefully):
                boot.watch(lambda: announce(plan, port), lambda: _stop_quietly(server))
                gc.freeze()  # what the master holds stays shared with the workers
                code = _serve(server, lambda: boot.load(plan.app))
    finally:
        multiprocessing.set_start_method(start_method, force=True)
        release_listener(listener)
    if boot.failure is not None:
        raise ConfigError(boot.failure.removeprefix("servekit: error: "), option="app")
    get_logger().info("stopped", pid=os.getpid())
    return code


def _stop_quietly(server: Any) -> None:
    """The app failed to load: stop, without granian's lines about the workers it
    respawns and stops (the master prints the one error line afterwards)."""
    mute_granian_logging()
    server.stop_gracefully("app failed")


def _serve(server: Any, loader: Callable[[], Any]) -> int:
    """granian's ``serve()``; its ``SystemExit`` (a worker crash loop) becomes the status."""
    try:
        server.serve(target_loader=loader, wrap_loader=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0
