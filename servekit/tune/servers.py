"""Servers for measurements: started on 127.0.0.1 with the options under test, always stopped."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servekit.errors import ConfigError
from servekit.testing import RunningServer, ServerStartError, running
from servekit.tune.settings import TuneSettings

__all__ = ["ENV_SET_ASIDE", "config_error", "environment_set_aside", "failure_line", "serving"]

#: variables that would override the options of the server under test
ENV_SET_ASIDE = ("PORT", "WEB_CONCURRENCY")
#: a trial server stops within this; its requests are over before it is stopped
_GRACE = 1


@contextlib.contextmanager
def environment_set_aside() -> Iterator[list[str]]:
    """Remove ``SERVEKIT_*``, ``PORT`` and ``WEB_CONCURRENCY`` from the environment for the
    block (each server states its own options), yielding their names; restored after."""
    names = sorted(v for v in os.environ if v.startswith("SERVEKIT_") or v in ENV_SET_ASIDE)
    saved = {name: os.environ.pop(name) for name in names}
    try:
        yield names
    finally:
        os.environ.update(saved)


def _error_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and event.get("level") == "error" else None


def failure_line(error: ServerStartError) -> str:
    """Why a server did not start, in one line: its last error event, else its last line."""
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    for line in reversed(lines):
        event = _error_event(line)
        if event is not None:
            return str(event.get("message") or event.get("event"))[:300]
    return lines[-1][:300] if lines else str(error).splitlines()[0]


def config_error(error: ServerStartError) -> ConfigError | None:
    """The server's own configuration error (as ``servekit run`` reports it), if that is why."""
    for line in str(error).splitlines():
        event = _error_event(line.strip())
        if event is not None and event.get("option"):
            return ConfigError(str(event.get("message")), option=str(event["option"]))
    return None


@contextlib.contextmanager
def serving(
    settings: TuneSettings,
    strategy: str,
    options: dict[str, Any],
    log_dir: Path,
    startup_timeout: float,
) -> Iterator[RunningServer]:
    """Serve the app with ``strategy`` and ``options`` on a free loopback port.

    Raises:
        ServerStartError: it exited or did not answer within ``startup_timeout``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"chdir": settings.chdir, "pythonpath": settings.pythonpath}
    with running(
        settings.app,
        strategy,
        host="127.0.0.1",
        log_dir=log_dir,
        startup_timeout=max(1.0, startup_timeout),
        graceful_timeout=_GRACE,
        **{k: v for k, v in extra.items() if v is not None},
        **options,
    ) as server:
        yield server
