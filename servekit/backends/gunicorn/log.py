"""A gunicorn logger class that sends the error log and the access log through structlog."""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, ClassVar

from gunicorn import glogging

from servekit.access import TrustedProxies, access_fields
from servekit.logs import get_logger

__all__ = ["GunicornLogger"]


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's ``logger_class``: every message becomes a structlog event.

    Error-log messages keep gunicorn's text as the event; each request becomes one
    ``request`` event with method, path, query, status, bytes, duration, pid and
    remote address. ``access_enabled`` is set by servekit before the arbiter starts
    (workers inherit it through the fork).
    """

    access_enabled: ClassVar[bool] = True
    #: request headers to log as fields (the ``access_log_fields`` option)
    access_headers: ClassVar[tuple[str, ...]] = ()

    def setup(self, cfg: Any) -> None:
        self.loglevel = self.LOG_LEVELS.get(cfg.loglevel.lower(), 20)
        self._access_log_enabled = type(self).access_enabled
        self._trusted = TrustedProxies(getattr(cfg, "forwarded_allow_ips", None))
        self._statsd: Any = None
        if getattr(cfg, "statsd_host", None):
            # gunicorn swaps in its statsd logger only when logger_class is its default;
            # servekit's logger keeps the structlog output and forwards the metrics.
            from gunicorn.instrument.statsd import Statsd

            self._statsd = Statsd(cfg)

    def _emit(self, level: str, msg: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._statsd is not None:
            self._to_statsd(level, kwargs)
        # Check the level before formatting: gunicorn's pre_request hook logs a debug
        # line for every request, and building it only to drop it costs ~2 us each.
        if _NUMBERS[level] < self.loglevel:
            return
        text = str(msg) % args if args else str(msg)
        event: dict[str, Any] = {"logger": "gunicorn"}
        if kwargs.get("exc_info"):
            event["exc_info"] = kwargs["exc_info"]
        getattr(get_logger(), level)(text, **event)

    def _to_statsd(self, level: str, kwargs: dict[str, Any]) -> None:
        """gunicorn's statsd metrics for a log call: level counts and ``extra`` metrics."""
        try:
            extra = kwargs.get("extra")
            if extra and extra.get("metric") and extra.get("value") is not None:
                self._statsd.log(_NUMBERS.get(level, 20), "", extra=extra)
            elif level in ("critical", "error", "warning"):
                name = "exception" if kwargs.get("exc_info") else level
                self._statsd.increment(f"gunicorn.log.{name}", 1)
        except Exception:  # a metrics sink must never break logging
            return

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("critical", msg, args, kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("error", msg, args, kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("warning", msg, args, kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("info", msg, args, kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("debug", msg, args, kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        message = getattr(msg, "servekit_message", None)
        if message:
            # The app failed to import under reload: one line, the user's file and
            # line in it, and the worker keeps watching for the fix.
            self._emit("error", f"{message}; serving 500 until the file is fixed", (), {})
            return
        kwargs.setdefault("exc_info", True)
        self._emit("error", msg, args, kwargs)

    def log(self, lvl: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
        level = lvl if isinstance(lvl, str) else glogging.logging.getLevelName(lvl)
        self._emit(
            str(level).lower() if str(level).lower() in _LEVELS else "info", msg, args, kwargs
        )

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if self._statsd is not None:
            with contextlib.suppress(Exception):
                duration_ms = request_time.total_seconds() * 1000
                self._statsd.timer("gunicorn.request.duration", duration_ms)
                self._statsd.increment("gunicorn.requests", 1)
                code = _status_code(resp)
                if code is not None:
                    self._statsd.increment(f"gunicorn.request.status.{code}", 1)
        if not self._access_log_enabled:
            return
        status = getattr(resp, "status_code", None) or getattr(resp, "status", None)
        if isinstance(status, str):
            head = status.split(None, 1)[0]
            status = int(head) if head.isdigit() else status
        sent = getattr(resp, "sent", None)
        if sent is None:
            sent = getattr(resp, "response_length", None)
        environ = environ or {}
        path = environ.get("PATH_INFO")
        if path is None:
            path = getattr(req, "path", None) or "-"
        get_logger().info(
            "request",
            method=environ.get("REQUEST_METHOD") or getattr(req, "method", None),
            path=path,
            query=environ.get("QUERY_STRING", ""),
            status=status,
            bytes=sent,
            duration_ms=round(request_time.total_seconds() * 1000, 3),
            pid=os.getpid(),
            remote=environ.get("REMOTE_ADDR"),
            **access_fields(environ, self._trusted, type(self).access_headers),
        )

    def reopen_files(self) -> None:
        """Nothing to reopen: servekit writes to the standard streams."""

    def close_on_exec(self) -> None:
        """Nothing to mark: servekit opens no log files."""


def _status_code(resp: Any) -> int | None:
    status = getattr(resp, "status_code", None) or getattr(resp, "status", None)
    if isinstance(status, bytes):
        status = status.decode("latin-1")
    if isinstance(status, str):
        head = status.split(None, 1)[0] if status.strip() else ""
        return int(head) if head.isdigit() else None
    return status if isinstance(status, int) else None


_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_LEVELS = set(_NUMBERS)
