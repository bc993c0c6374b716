"""Embedding gunicorn: a ``BaseApplication`` fed only from servekit's resolved plan.

What this module guards against (see DESIGN §4):

* gunicorn reads ``PORT``/``WEB_CONCURRENCY`` at import and ``GUNICORN_CMD_ARGS``
  or a ``gunicorn.conf.py`` in ``Application``: servekit uses ``BaseApplication``
  and sets ``bind`` and ``workers`` explicitly, so none of them applies.
* gunicorn validates settings with ``sys.exit(1)``: servekit validated every value
  before, so that never happens with a servekit config.
* the control socket (``gunicorn.ctl``) is disabled: two servers would otherwise
  fight over one path, and a read-only home would break start-up.
* a forked worker leaves through ``sys.exit``; unwinding would run the code after
  ``serve()`` in every worker. Workers end with ``os._exit`` instead.
* SIGINT drains like SIGTERM (gunicorn's SIGINT is a quick shutdown).
* a graceful stop loses no queued connection: the master closes the listeners'
  gate and tells the workers (servekit.backends.gunicorn.workers.drain), which serve what the
  kernel had queued before they exit.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import select
import signal
import sys
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from servekit.backends.gunicorn.log import GunicornLogger
from servekit.backends.gunicorn.workers import drain
from servekit.errors import ConfigError
from servekit.loading import failure_location, load_app
from servekit.sockets import bind_listener, close_gate, has_queued, release_listener

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["gunicorn_settings", "serve_gunicorn"]


def gunicorn_settings(plan: Plan, fd: int | None = None) -> dict[str, Any]:
    """The gunicorn settings (by gunicorn's setting name) for ``plan``.

    Args:
        plan: a resolved gunicorn plan.
        fd: the listening socket servekit bound; ``None`` maps the address itself.
    """
    cfg = plan.config
    if fd is not None:
        bind = [f"fd://{fd}"]
    elif isinstance(plan.address, str):
        bind = [f"unix:{plan.address}"]
    else:
        host, port = plan.address
        bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    settings: dict[str, Any] = {
        "bind": bind,
        "worker_class": plan.worker_class,
        "workers": getattr(cfg, "workers"),  # noqa: B009
        "timeout": getattr(cfg, "timeout"),  # noqa: B009
        "graceful_timeout": cfg.graceful_timeout,
        # sync never keeps connections alive; gthread cannot once its connections are
        # capped at its threads (see below), so both get 0 instead of a warning.
        "keepalive": getattr(cfg, "keepalive", 0),
        "max_requests": getattr(cfg, "max_requests"),  # noqa: B009
        "max_requests_jitter": getattr(cfg, "max_requests_jitter"),  # noqa: B009
        "backlog": cfg.backlog,
        "forwarded_allow_ips": getattr(cfg, "forwarded_allow_ips"),  # noqa: B009
        "reload": bool(cfg.reload),
        "certfile": cfg.certfile,
        "keyfile": cfg.keyfile,
        "loglevel": cfg.log_level,
        "logger_class": GunicornLogger,
        "accesslog": "-" if cfg.access_log else None,
        "errorlog": "-",
        "control_socket_disable": True,
        "proc_name": f"servekit:{plan.strategy}",
        "preload_app": False,
    }
    threads = getattr(cfg, "threads", None)
    if threads is not None:
        settings["threads"] = threads
    if plan.strategy == "gthread":
        # gthread accepts connections beyond its free threads and queues them inside a
        # busy worker; capping connections at the thread count makes a burst spread
        # over the workers, so `threads x workers` requests really run at once.
        settings["worker_connections"] = threads
    connections = getattr(cfg, "worker_connections", None)
    if connections is not None:
        settings["worker_connections"] = connections
    settings.update(getattr(cfg, "gunicorn", None) or {})
    return settings


#: gunicorn settings servekit sets itself -> the servekit option to use instead (None: none)
RESERVED: dict[str, str | None] = {
    "bind": "bind (or host and port)",
    "workers": "workers",
    "worker_class": "strategy",
    "threads": "threads",
    "worker_connections": "worker_connections",
    "timeout": "timeout",
    "graceful_timeout": "graceful_timeout",
    "keepalive": "keepalive",
    "max_requests": "max_requests",
    "max_requests_jitter": "max_requests_jitter",
    "backlog": "backlog",
    "forwarded_allow_ips": "forwarded_allow_ips",
    "reload": "reload",
    "certfile": "certfile",
    "keyfile": "keyfile",
    "loglevel": "log_level",
    "accesslog": "access_log",
    "errorlog": "log_format",
    "logger_class": "log_format",
    "logconfig": "log_format",
    "logconfig_dict": "log_format",
    "logconfig_json": "log_format",
    "post_worker_init": None,
    "control_socket": None,
    "control_socket_disable": None,
    "reuse_port": None,
    "daemon": None,
    "config": None,
    "wsgi_app": None,
    "check_config": None,
    "print_config": None,
    "chdir": "chdir",
    "pythonpath": "pythonpath",
}


def check_extra_settings(extra: dict[str, Any]) -> None:
    """Check the ``gunicorn`` escape hatch: known names, not servekit's own, valid values.

    Raises:
        ConfigError: naming the offending key.
    """
    import difflib

    from gunicorn.config import KNOWN_SETTINGS, Config

    known = [setting.name for setting in KNOWN_SETTINGS]
    probe = Config()
    for key, value in extra.items():
        if key in RESERVED:
            instead = RESERVED[key]
            hint = f"; use servekit's option {instead!r}" if instead else ""
            msg = f"option 'gunicorn': setting {key!r} is managed by servekit{hint}"
            raise ConfigError(msg, option="gunicorn")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"option 'gunicorn': unknown gunicorn setting {key!r}{hint}"
            raise ConfigError(msg, option="gunicorn")
        try:
            probe.set(key, value)
        except Exception as exc:
            msg = f"option 'gunicorn': invalid value {value!r} for gunicorn setting {key!r}: {exc}"
            raise ConfigError(msg, option="gunicorn") from None


class ReloadableLoadError(SyntaxError):
    """The app failed to import while ``reload`` is on: gunicorn serves a 500 and watches.

    gunicorn's worker handles a :class:`SyntaxError` from loading, with reload on, by
    serving an error page and watching ``filename`` for the fix; servekit raises this
    for every import failure so that an ``ImportError`` or a ``NameError`` in the
    user's module is survived the same way.
    """

    servekit_message: str = ""


class _Application(BaseApplication):  # type: ignore[misc]
    def __init__(self, plan: Plan, fd: int | None, failures: _BootFailure) -> None:
        self.plan = plan
        self.fd = fd
        self.failures = failures
        self.master_pid = os.getpid()
        super().__init__(usage=None, prog="servekit")

    def load_config(self) -> None:
        for name, value in gunicorn_settings(self.plan, self.fd).items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        try:
            return load_app(self.plan.app)
        except ConfigError as error:
            if os.getpid() == self.master_pid:
                raise  # preload_app: the entry point prints it and exits 2
            cause = error.__cause__
            if self.cfg.reload and cause is not None:
                where = failure_location(cause)
                failed = ReloadableLoadError(error.message)
                failed.filename = where[0] if where else None
                failed.lineno = where[1] if where else None
                failed.servekit_message = error.message
                raise failed from None
            # One line, once: the master prints it and exits 2 (see _BootFailure).
            self.failures.report(error.message)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(0)


class _BootFailure:
    """A pipe on which a worker whose app failed to import sends the message to the master.

    gunicorn prints the error in every worker and logs its own lines about it; with
    this the worker leaves quietly and the master prints servekit's one line, once.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.message: str | None = None

    def report(self, message: str) -> None:
        """In a worker: send ``message`` (cut to one atomic pipe write)."""
        line = " ".join(message.split("\n"))
        data = line.encode("utf-8", "replace")[: select.PIPE_BUF - 1] + b"\n"
        with contextlib.suppress(OSError):
            _unpatched_write(self.write_fd, data)

    def poll(self) -> str | None:
        """In the master: the first failure reported, if any."""
        if self.message is None:
            try:
                data = os.read(self.read_fd, select.PIPE_BUF)
            except BlockingIOError:
                return None
            # Several workers may have failed: the first line is the first report.
            self.message = data.decode("utf-8", "replace").split("\n")[0] or None
        return self.message


#: ``os.write`` as imported in the master. eventlet's monkey-patched ``os.write`` retries
#: EPIPE forever: a worker that booted after the master stopped reading would spin at
#: 100% CPU inside this hook and never serve (every replacement worker did).
_unpatched_write = os.write


class _BootReport:
    """A pipe on which each worker says "app loaded"; the master announces on the first.

    servekit logs ``serving`` only once a worker has really loaded the app, so an
    app that fails to import never looks as if it had started.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.done = False
        #: the arbiter, whose copy in a worker holds the signals it got while booting
        self.arbiter: Any = None

    def worker_booted(self, worker: Any) -> None:
        """``post_worker_init`` hook: report the boot and make SIGINT drain like SIGTERM.

        Also act on a stop the worker was told while it booted: until gunicorn installs
        the worker's handlers, a signal runs the master's handler inherited with the
        fork, which only queues it in the worker's copy of the master's signal queue.
        A worker spawned just before SIGTERM would otherwise never notice, serve on,
        and hold the shutdown until graceful_timeout ends with a SIGKILL.
        """
        signal.signal(signal.SIGINT, signal.getsignal(signal.SIGTERM))
        if drain.server_stopping():
            # Booted during a graceful stop (spawned to serve what is queued).
            worker.handle_exit(signal.SIGTERM, None)
        elif self.arbiter is not None:
            missed = []
            with contextlib.suppress(queue.Empty):
                while True:
                    missed.append(self.arbiter.SIG_QUEUE.get_nowait())
            if signal.SIGQUIT in missed:
                worker.handle_quit(signal.SIGQUIT, None)
            elif signal.SIGTERM in missed or signal.SIGINT in missed:
                worker.handle_exit(signal.SIGTERM, None)
        if self.done:
            return  # forked after the announcement: nobody reads any more
        # OSError: the master announced meanwhile and closed its end (EPIPE).
        with contextlib.suppress(OSError):
            _unpatched_write(self.write_fd, b"1")

    def poll(self) -> bool:
        """In the master: whether a worker has booted (first time only)."""
        if self.done:
            return False
        try:
            booted = bool(os.read(self.read_fd, 512))
        except BlockingIOError:
            return False
        if booted:
            self.done = True
            os.close(self.read_fd)
        return booted


_NO_LISTENERS: list[Any] = []
#: workers the master may start during a graceful stop to serve a queue nobody drains
_MAX_DRAIN_WORKERS = 2


class _Arbiter(Arbiter):  # type: ignore[misc]
    boot_report: _BootReport
    boot_failure: _BootFailure
    on_first_boot: Any
    LISTENERS: list[Any]
    _held_listeners: list[Any] = []  # noqa: RUF012 - replaced per instance in stop()
    _drain_workers = 0

    def wait_for_signals(self, timeout: float = 1.0) -> list[int]:
        if self.boot_failure.poll() is not None:
            raise HaltServer("App failed to load.", self.APP_LOAD_ERROR)
        if self.boot_report.done:
            return list(super().wait_for_signals(timeout))
        signals = list(super().wait_for_signals(min(timeout, 0.02)))
        if self.boot_report.poll():
            self.on_first_boot()
        return signals

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        if exit_status != self.APP_LOAD_ERROR or self.boot_failure.message is None:
            super().halt(reason, exit_status)
            return
        # servekit prints the worker's message once, as its own error line.
        self._stop_control_server()
        self.stop(graceful=False)
        if self.pidfile is not None:
            self.pidfile.unlink()
        sys.exit(exit_status)

    def handle_int(self) -> None:
        self.handle_term()

    def stop(self, graceful: bool = True) -> None:
        if not graceful:
            super().stop(graceful)
            return
        # Before gunicorn signals the workers: new connections are no longer answered
        # (the gate), and the workers, told that the whole server stops, serve what is
        # queued instead of leaving it to be reset.
        drain.announce_stop()
        held: list[Any] = list(self.LISTENERS)
        for listener in held:
            close_gate(listener)
        # gunicorn closes the master's listeners first. When every worker has already
        # given up its own (all recycling at once, or none spawned yet) that close is
        # the last one and resets what is queued; the master keeps them open until
        # its workers are gone, and sends a worker for what is left (reap_workers).
        self.LISTENERS = _NO_LISTENERS
        self._held_listeners = held
        try:
            super().stop(graceful)
        finally:
            self._held_listeners = []
            for listener in held:
                with contextlib.suppress(OSError):
                    listener.close()

    def reap_workers(self) -> None:
        held: list[Any] = getattr(self, "_held_listeners", [])
        try:
            super().reap_workers()
        except HaltServer:
            if not held:
                raise
            # A drain worker that could not boot; the stop goes on regardless.
        if (
            held
            and not self.WORKERS
            and self.boot_report.done  # the app loads, so a worker can serve
            and self._drain_workers < _MAX_DRAIN_WORKERS
            and any(has_queued(listener) for listener in held)
        ):
            self._drain_workers += 1
            self.log.info("Starting a worker to serve the connections still queued")
            self.LISTENERS = held
            try:
                self.spawn_worker()  # it boots knowing the server stops: it drains
            finally:
                self.LISTENERS = _NO_LISTENERS

    def spawn_worker(self) -> Any:
        master = os.getpid()
        try:
            return super().spawn_worker()
        except SystemExit as exc:
            if os.getpid() == master:
                raise
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            if os.getpid() == master:
                raise
            code = 1
        # In a worker: leave now, never unwind into the caller of serve().
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def serve_gunicorn(plan: Plan) -> int:
    """Run an embedded gunicorn arbiter for ``plan``; return its exit status.

    Raises:
        ConfigError: the address cannot be bound or the app cannot be loaded.
    """
    from servekit.run import announce

    GunicornLogger.access_enabled = bool(plan.config.access_log)
    listener = bind_listener(plan)
    port = None if isinstance(plan.address, str) else listener.getsockname()[1]
    failures = _BootFailure()
    report = _BootReport()
    try:
        app = _Application(plan, listener.fileno(), failures)
        app.cfg.set("post_worker_init", report.worker_booted)
        arbiter = _Arbiter(app)  # with preload_app, this imports the app
    except BaseException:
        release_listener(listener)
        raise
    listener.detach()  # gunicorn owns (and closes) the descriptor from here on
    drain.prepare()
    arbiter.boot_report = report
    arbiter.boot_failure = failures
    report.arbiter = arbiter
    arbiter.on_first_boot = lambda: announce(plan, port)
    # Objects the master holds now (config, imported modules) are inherited by every
    # worker; keeping them out of the collector keeps their pages shared after the fork.
    gc.freeze()
    try:
        arbiter.run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0
    if code == Arbiter.APP_LOAD_ERROR:
        if failures.message is not None:
            raise ConfigError(failures.message.removeprefix("servekit: error: "), option="app")
        return 2
    return code
