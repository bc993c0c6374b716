"""``serve()``: resolve, then run. The entry point that turns user mistakes into exit status 2."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

from servekit import metrics
from servekit.config import StrategyConfig
from servekit.errors import ConfigError, DevServerWarning
from servekit.loading import check_app_spec, prepare_import_path
from servekit.logs import configure, current_format, get_logger, render_always
from servekit.plan import Plan
from servekit.resolver import ENV_PREFIX, resolve

__all__ = ["announce", "fail", "run_or_exit", "run_plan", "serve"]


def announce(plan: Plan, port: int | None = None) -> None:
    """Log the ``serving`` event: strategy, URL, capacity, pid (and mark the server ready)."""
    exporter = metrics.active()
    if exporter is not None:
        exporter.ready = True
    get_logger().info(
        "serving",
        strategy=plan.strategy,
        server=plan.server,
        worker_class=plan.worker_class,
        url=plan.url(port),
        capacity=plan.capacity,
        capacity_text=plan.capacity_text,
        env=plan.env,
        pid=os.getpid(),
    )


def run_plan(plan: Plan) -> int:
    """Configure logging, report warnings, and serve ``plan``; return the exit status.

    Raises:
        ConfigError: the app cannot be loaded or the address cannot be bound.
    """
    cfg = plan.config
    log = configure(str(cfg.log_format), str(cfg.log_level))
    prepare_import_path(cfg.chdir, cfg.pythonpath)
    if cfg.reload and cfg.chdir:
        # werkzeug's reloader re-runs this command in the new directory: a relative
        # chdir given on the command line would be taken from there a second time.
        os.environ[ENV_PREFIX + "CHDIR"] = cfg.chdir
    if isinstance(plan.app, str):
        check_app_spec(plan.app)
    exporter = metrics.start(plan) if cfg.metrics else None
    for note in plan.notes:
        log.info("note", message=note)
    for text in plan.warnings:
        if cfg.log_level in ("error", "critical"):
            # A guard warning must not vanish because the log level hides warnings.
            render_always("warning", "warning", message=text)
        else:
            log.warning("warning", message=text)
    try:
        return plan.adapter.run(plan)
    finally:
        if exporter is not None:
            metrics.stop()


def fail(error: ConfigError, log_format: str | None = None) -> None:
    """Print a user error as one line (a JSON object in ``json`` format) and exit with status 2.

    Args:
        error: what went wrong.
        log_format: the format to use; the configured one (or the environment's
            ``SERVEKIT_LOG_FORMAT``) when ``None``.
    """
    fmt = log_format or current_format()
    if fmt == "json":
        render_always(
            "error",
            "error",
            fmt=fmt,
            message=error.message,
            option=error.option,
            source=error.source,
        )
    else:
        sys.stderr.write(f"servekit: error: {error.message}\n")
        sys.stderr.flush()
    raise SystemExit(2)


def run_or_exit(make_plan: Callable[[], Plan], log_format: str | None = None) -> None:
    """Build a plan and serve it, as an entry point: user errors print one line and exit 2.

    Raises:
        SystemExit: status 2 for a :class:`ConfigError`, or the server's non-zero status.
    """
    try:
        with warnings.catch_warnings():
            # The entry points log the guard's warning; Python's own copy of it on
            # stderr would say it twice (and not as JSON).
            warnings.simplefilter("ignore", DevServerWarning)
            plan = make_plan()
        status = run_plan(plan)
    except ConfigError as error:
        fail(error, log_format)
        return
    if status != 0:
        raise SystemExit(status)


def serve(app: Any, strategy: str | StrategyConfig | None = None, **options: Any) -> None:
    """Serve a WSGI app until SIGTERM or SIGINT, then drain requests in flight.

    Args:
        app: a WSGI callable, or an import string ``"pkg.module:attr"`` /
            ``"pkg.module:factory()"`` (imported in each worker, after any monkey-patch).
        strategy: a strategy name (``"auto"`` when omitted) or a config object such
            as ``GthreadConfig(workers=2, threads=8)``.
        **options: any option by name (``workers=4``, ``port=8080`` ...).
            ``SERVEKIT_<OPTION>`` environment variables override them.

    Returns after a clean shutdown. A configuration error prints one line naming
    the option (and the environment variable it came from) and exits with status 2.
    """
    run_or_exit(lambda: resolve(app, strategy, **options), options.get("log_format"))
