"""granian's log records as servekit's structlog events.

granian logs through the standard ``logging`` module: its Python side on ``_granian``,
its Rust side on ``_granian.<module>`` (through pyo3-log, propagating to ``_granian``).
It sets logging up with ``logging.config.dictConfig`` in the master and again in every
worker, which closes every handler the app had already made (file handlers reopen,
queue or socket handlers break). servekit replaces that step
(:func:`configure_granian_logging`): only granian's own loggers are touched, each
gets :class:`LogBridge`, and nothing else in the process is reconfigured.

The access log is not granian's: servekit's WSGI layer logs each request (``wsgi.py``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from servekit.logs import get_logger

__all__ = ["GRANIAN_LOGGERS", "LogBridge", "configure_granian_logging", "mute_granian_logging"]

GRANIAN_LOGGERS = ("_granian", "granian.access")
_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "notset": logging.NOTSET,
}


class LogBridge(logging.Handler):
    """A ``logging`` handler that turns each record into a servekit event (``logger="granian"``)."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a log line must never take a worker down
            if record.levelno >= logging.ERROR:
                level = "error"
            elif record.levelno >= logging.WARNING:
                level = "warning"
            elif record.levelno >= logging.INFO:
                level = "info"
            else:
                level = "debug"
            fields: dict[str, Any] = {"logger": "granian"}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            getattr(get_logger(), level)(record.getMessage(), **fields)


def configure_granian_logging(level: Any, config: Any = None, enabled: bool = True) -> None:
    """Stands in for ``granian.log.configure_logging`` (same arguments; ``config`` unused).

    Args:
        level: granian's log level (a ``LogLevels`` member or its name).
        config: granian's ``log_dictconfig`` (servekit passes none).
        enabled: False mutes granian's own logger, as granian does.
    """
    name = str(getattr(level, "value", level)).lower()
    bridge = LogBridge()
    for logger_name in GRANIAN_LOGGERS:
        logger = logging.getLogger(logger_name)
        logger.handlers[:] = [bridge]
        logger.propagate = False
    main = logging.getLogger("_granian")
    main.setLevel(_LEVELS.get(name, logging.INFO) if enabled else logging.CRITICAL + 1)


def mute_granian_logging() -> None:
    """Silence granian's own loggers in this process (from now on)."""
    for logger_name in GRANIAN_LOGGERS:
        logging.getLogger(logger_name).setLevel(logging.CRITICAL + 1)
