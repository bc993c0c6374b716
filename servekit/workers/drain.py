"""What servekit's gunicorn master tells its workers when the whole server stops.

On a graceful stop the master closes the listeners' gate (see
:func:`servekit.sockets.close_gate`) and raises a flag in memory it shares with
every worker, then sends them SIGTERM. A worker that finds the flag raised serves
what is still queued on the listeners before it exits. A worker stopped alone
(``max_requests``, a reload, ``kill -TERM`` of one worker) finds it lowered and
leaves the queue to its siblings, as gunicorn's own workers do.

The flag is an anonymous shared mapping created in the master before the first
fork; workers inherit it. Without it (a worker class used under plain gunicorn)
:func:`server_stopping` is always False.
"""

from __future__ import annotations

import mmap
import time
from typing import Any

__all__ = ["announce_stop", "drain_deadline", "prepare", "server_stopping"]

_flag: mmap.mmap | None = None


def prepare() -> None:
    """Create the shared flag (lowered); call in the master before workers fork."""
    global _flag
    if _flag is None:
        _flag = mmap.mmap(-1, 1)
    _flag[0] = 0


def announce_stop() -> None:
    """In the master: the whole server is stopping gracefully."""
    if _flag is not None:
        _flag[0] = 1


def server_stopping() -> bool:
    """In a worker: whether the master announced a graceful stop of the whole server."""
    return _flag is not None and _flag[0] == 1


def drain_deadline(cfg: Any, since: float | None = None) -> float:
    """The ``time.monotonic()`` by which a worker stopping at ``since`` must be done.

    The master kills what is left ``graceful_timeout`` seconds after it sent SIGTERM.
    """
    start = time.monotonic() if since is None else since
    return start + float(cfg.graceful_timeout)
