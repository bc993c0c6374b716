"""Embedding gunicorn: a ``BaseApplication`` fed only from servekit's resolved plan.

* gunicorn reads ``PORT``/``WEB_CONCURRENCY`` at import and ``GUNICORN_CMD_ARGS``
  or a ``gunicorn.conf.py`` in ``Application``: servekit uses ``BaseApplication``
  and sets ``bind`` and ``workers`` explicitly, so none of them applies.
* gunicorn validates settings with ``sys.exit(1)``: servekit validated every value
  before (:func:`check_extra_settings` for the ``gunicorn`` escape hatch), so that
  never happens with a servekit config.
* the control socket (``gunicorn.ctl``) is disabled: two servers would otherwise
  fight over one path, and a read-only home would break start-up.
* an app that fails to import is reported once, by the master (see ``boot.py``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from servekit import metrics
from servekit.backends.gunicorn.boot import BootFailure
from servekit.backends.gunicorn.log import GunicornLogger
from servekit.backends.gunicorn.metering import request_hooks
from servekit.backends.gunicorn.workers import limits
from servekit.errors import ConfigError
from servekit.loading import failure_location, load_app

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = [
    "NO_EFFECT",
    "RESERVED",
    "Application",
    "ReloadableLoadError",
    "check_extra_settings",
    "client_limits",
    "gunicorn_settings",
]


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


def client_limits(plan: Plan) -> limits.Limits:
    """servekit's slow-client limits for ``plan`` (gunicorn has no settings for them).

    They reach the workers as module state set in the master before it forks (see
    :mod:`servekit.backends.gunicorn.workers.limits`); a strategy whose model lacks an
    option keeps that limit's default.
    """
    cfg = plan.config
    default = limits.Limits()
    header_timeout = getattr(cfg, "header_timeout", None)
    body_min_rate = getattr(cfg, "body_min_rate", None)
    max_body_size = getattr(cfg, "max_body_size", None)
    return limits.Limits(
        header_timeout=default.header_timeout if header_timeout is None else float(header_timeout),
        body_min_rate=default.body_min_rate if body_min_rate is None else int(body_min_rate),
        max_body_size=default.max_body_size if max_body_size is None else int(max_body_size),
    )


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


#: gunicorn settings that servekit's logger would make a no-op -> what to use instead
NO_EFFECT: dict[str, str] = {
    "access_log_format": "servekit's access log is a structured event: add request headers "
    "to it with option 'access_log_fields'",
    "syslog": "servekit logs through structlog to stderr; collect it from there",
    "syslog_addr": "servekit logs through structlog to stderr; collect it from there",
    "syslog_prefix": "servekit logs through structlog to stderr; collect it from there",
    "syslog_facility": "servekit logs through structlog to stderr; collect it from there",
    "disable_redirect_access_to_syslog": "servekit sends nothing to syslog",
    "capture_output": "servekit writes to stderr, which needs no capturing",
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
        if key in NO_EFFECT:
            msg = f"option 'gunicorn': setting {key!r} would have no effect: {NO_EFFECT[key]}"
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
        problem = _path_problem(key, value)
        if problem:
            msg = f"option 'gunicorn': setting {key!r} ({value!r}): {problem}"
            raise ConfigError(msg, option="gunicorn")


def _path_problem(key: str, value: Any) -> str | None:
    """Paths gunicorn would fail on only once it runs (a traceback, a socket left behind)."""
    if not isinstance(value, str) or not value:
        return None
    if key == "pidfile":
        folder = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(folder):
            return f"the directory {folder!r} does not exist"
        if not os.access(folder, os.W_OK):
            return f"the directory {folder!r} is not writable"
    if key == "worker_tmp_dir":
        if not os.path.isdir(value):
            return "is not a directory"
        if not os.access(value, os.W_OK):
            return "is not writable"
    return None


class ReloadableLoadError(SyntaxError):
    """The app failed to import while ``reload`` is on: gunicorn serves a 500 and watches.

    gunicorn's worker handles a :class:`SyntaxError` from loading, with reload on, by
    serving an error page and watching ``filename`` for the fix; servekit raises this
    for every import failure so that an ``ImportError`` or a ``NameError`` in the
    user's module is survived the same way.
    """

    servekit_message: str = ""


class Application(BaseApplication):  # type: ignore[misc]
    def __init__(
        self,
        plan: Plan,
        fd: int | None,
        failures: BootFailure,
        booted: Callable[[Any], None] | None = None,
    ) -> None:
        self.plan = plan
        self.fd = fd
        self.failures = failures
        self.booted = booted
        self.master_pid = os.getpid()
        super().__init__(usage=None, prog="servekit")

    def load_config(self) -> None:
        # Called again on SIGHUP (gunicorn's reload makes a new config): the boot hook
        # goes in here, or reloaded workers would lose the SIGINT drain and the report.
        for name, value in gunicorn_settings(self.plan, self.fd).items():
            self.cfg.set(name, value)
        limits.configure(client_limits(self.plan))
        if self.booted is not None:
            self.cfg.set("post_worker_init", self.booted)
        exporter = metrics.active()
        if exporter is not None:
            pre, post = request_hooks(exporter, self.cfg.pre_request, self.cfg.post_request)
            self.cfg.set("pre_request", pre)
            self.cfg.set("post_request", post)

    def load(self) -> Any:
        exporter = metrics.active()
        if exporter is not None:
            exporter.in_worker()
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
