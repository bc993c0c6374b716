"""servekit's structlog logger: console in a terminal, JSON lines in production.

Nothing here runs at import. :func:`configure` is called by the entry points
(``serve()`` / the CLI); it builds servekit's own bound logger and leaves the
application's global structlog configuration alone.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure", "current_format", "get_logger", "render_always"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _LineWriter:
    """A structlog logger that writes each rendered event with one ``write(2)``.

    One system call per line keeps lines from master and workers whole when they
    share a pipe (writes up to PIPE_BUF bytes are atomic).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        data = (message + "\n").encode("utf-8", "replace")
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._stream.write(message + "\n")
            self._stream.flush()
            return
        self._stream.flush()
        while data:
            written = os.write(fd, data)
            data = data[written:]

    debug = info = warning = warn = error = critical = exception = fatal = failure = log = msg


_logger: Any = None
_format = "console"
_configured = False


def configure(log_format: str, log_level: str, stream: TextIO | None = None) -> Any:
    """Build servekit's logger and return it.

    Args:
        log_format: ``"console"`` or ``"json"``.
        log_level: ``"debug"`` ... ``"critical"``.
        stream: where lines go (stderr by default).
    """
    global _logger, _format, _configured
    _logger = _build(log_format, _LEVELS[log_level], stream)
    _format = log_format
    _configured = True
    return _logger


def _build(log_format: str, level: int, stream: TextIO | None) -> Any:
    out = sys.stderr if stream is None else stream
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if log_format == "json":
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        colors = bool(getattr(out, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ
        processors.append(structlog.dev.ConsoleRenderer(colors=colors))
    return structlog.wrap_logger(
        _LineWriter(out),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )


def current_format() -> str:
    """The configured format; before :func:`configure`, ``SERVEKIT_LOG_FORMAT`` if it says json."""
    if _configured:
        return _format
    value = os.environ.get("SERVEKIT_LOG_FORMAT", "").strip().lower()
    return "json" if value == "json" else "console"


def render_always(level: str, event: str, *, fmt: str | None = None, **fields: Any) -> None:
    """Write one event whatever the log level (errors, guard warnings), in ``fmt`` or the
    current format."""
    fields = {k: v for k, v in fields.items() if v is not None}
    getattr(_build(fmt or current_format(), logging.DEBUG, None), level)(event, **fields)


def get_logger() -> Any:
    """servekit's logger (configured with defaults on first use if nobody configured it)."""
    if _logger is None:
        return configure("console", "info")
    return _logger
