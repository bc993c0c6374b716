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

import errno
import mmap
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from servekit.sockets import BacklogWatch

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "RETRY_ACCEPT_ERRNOS",
    "SIGNALLED_WAIT_SECONDS",
    "StopClock",
    "announce_stop",
    "drain_deadline",
    "prepare",
    "server_stopping",
    "stop_announced",
]

_flag: mmap.mmap | None = None
#: accept() errors that mean "nothing for this worker after all": a sibling took the
#: connection first, or its client gave up while it was queued
RETRY_ACCEPT_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED})
#: how long a worker that got SIGTERM/SIGINT looks for the master's announcement
SIGNALLED_WAIT_SECONDS = 0.5
_ANNOUNCEMENT_POLL_SECONDS = 0.01


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


def server_stopping(wait: float = 0.0, sleep: Callable[[float], Any] = time.sleep) -> bool:
    """In a worker: whether the master announced a graceful stop of the whole server.

    Args:
        wait: seconds to keep looking for the announcement. A signal sent to the whole
            process group (Ctrl+C in a terminal) reaches the workers as early as the
            master, which announces a moment later.
        sleep: how to pause between looks (the event loop's own sleep in async workers).
    """
    if _flag is None:
        return False
    end = time.monotonic() + wait
    while _flag[0] != 1:
        if time.monotonic() >= end:
            return False
        sleep(_ANNOUNCEMENT_POLL_SECONDS)
    return True


def stop_announced(signalled_at: float | None, sleep: Callable[[float], Any] = time.sleep) -> bool:
    """In a worker that stops: whether the whole server stops (then it drains the queue).

    Args:
        signalled_at: when the worker got SIGTERM/SIGINT (``time.monotonic()``), or
            ``None`` when it stops on its own (``max_requests``, a lost master).
        sleep: how to pause while waiting (cooperative in gevent/eventlet workers).
    """
    if signalled_at is None:
        return server_stopping()
    wait = max(0.0, signalled_at + SIGNALLED_WAIT_SECONDS - time.monotonic())
    return server_stopping(wait, sleep)


def drain_deadline(cfg: Any, since: float | None = None) -> float:
    """The ``time.monotonic()`` by which a worker stopping at ``since`` must be done.

    The master kills what is left ``graceful_timeout`` seconds after it sent SIGTERM.
    """
    start = time.monotonic() if since is None else since
    return start + float(cfg.graceful_timeout)


class StopClock:
    """Mixin for servekit's gunicorn workers, listed before gunicorn's worker class:
    remembers when SIGTERM/SIGINT arrived, the moment a graceful stop's time counts from.
    """

    _stop_signalled_at: float | None = None
    cfg: Any
    sockets: Any

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM (and SIGINT under servekit): note the time, then gunicorn's handling."""
        if self._stop_signalled_at is None:
            self._stop_signalled_at = time.monotonic()
        super().handle_exit(sig, frame)  # type: ignore[misc]

    def stop_announced(self, sleep: Callable[[float], Any] = time.sleep) -> bool:
        """Whether this stop is the whole server's (see :func:`stop_announced`)."""
        return stop_announced(self._stop_signalled_at, sleep)

    def backlog_watch(self, listeners: Sequence[Any] | None = None) -> BacklogWatch:
        """A watch on the listen queue of ``listeners`` (this worker's by default) that
        ends when the queue stays empty or the graceful timeout runs out."""
        return BacklogWatch(
            self.sockets if listeners is None else listeners,
            drain_deadline(self.cfg, self._stop_signalled_at),
        )
