"""``metrics`` under gunicorn: the arbiter's part (worker slots, restarts by how workers
ended, sources) and the workers' (each request counted from gunicorn's own request hooks).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from servekit import metrics
from servekit.metrics.exporter import Exporter

__all__ = ["ArbiterMetering", "away_meter", "describe_end", "request_hooks"]

PreRequest = Callable[[Any, Any], None]
PostRequest = Callable[[Any, Any, Any, Any], None]


def request_hooks(
    exporter: Exporter, pre: PreRequest, post: PostRequest
) -> tuple[PreRequest, PostRequest]:
    """gunicorn ``pre_request`` and ``post_request`` hooks that count each request, then
    run ``pre`` and ``post`` (the user's hooks, or gunicorn's defaults).

    Every gunicorn worker (and servekit's tornado container) calls both hooks around each
    request it hands to the app, the second one in a ``finally``, so counting there costs
    no wrapper around the app, its ``start_response`` or its body. A request ended by an
    exception before any byte went out counts as the 500 gunicorn answers.
    """
    clock = time.perf_counter

    def pre_request(worker: Any, req: Any) -> None:
        writer = worker.__dict__.get("servekit_meter")
        if writer is None:
            writer = worker.servekit_meter = exporter.writer() or False
        if writer:
            writer.begin()
            req.servekit_started = clock()
        pre(worker, req)

    def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
        started = req.__dict__.pop("servekit_started", None)
        if started is not None:
            code = getattr(resp, "status_code", None)
            if code is None or (sys.exc_info()[0] is not None and not resp.headers_sent):
                code = 500
            worker.servekit_meter.end(code, clock() - started)
        post(worker, req, environ, resp)

    return pre_request, post_request


def away_meter() -> Callable[[int], None] | None:
    """What counts a worker's requests waiting on their clients without a thread (for
    :class:`~servekit.backends.gunicorn.workers.slots.Slots`), or ``None`` with metrics off.

    gunicorn makes a worker object in the master before it forks: the slot to write is
    looked up at each call, in the process that makes it (only while a client is slow).
    """
    exporter = metrics.active()
    if exporter is None:
        return None

    def away(change: int) -> None:
        writer = exporter.writer()
        if writer is not None:
            writer.away(change)

    return away


def _reason(info: os.waitid_result | None) -> str:
    """``exit`` (status 0: max_requests, reload), ``error`` (non-zero status) or ``signal``."""
    if info is None:
        return "error"
    if info.si_code == os.CLD_EXITED:
        return "exit" if info.si_status == 0 else "error"
    return "signal"


def describe_end(info: os.waitid_result | None) -> str:
    """How a worker ended, in words: "exited with status 7", "was killed by SIGSEGV"."""
    if info is None:
        return "ended"
    if info.si_code == os.CLD_EXITED:
        return f"exited with status {info.si_status}"
    try:
        name = signal.Signals(info.si_status).name
    except ValueError:
        name = f"signal {info.si_status}"
    return f"was killed by {name}"


class ArbiterMetering:
    """Ties servekit's arbiter to the active metrics exporter (a no-op when metrics are off)."""

    def __init__(self, arbiter: Any) -> None:
        self.exporter = metrics.active()
        self.arbiter = arbiter
        self._pending_slot: int | None = None
        if self.exporter is not None:
            self.exporter.sources.listeners = self._listeners
            self.exporter.sources.workers = lambda: len(arbiter.WORKERS)

    def _listeners(self) -> list[Any]:
        held = self.arbiter.LISTENERS or getattr(self.arbiter, "_held_listeners", [])
        return [getattr(listener, "sock", listener) for listener in held]

    def before_spawn(self) -> None:
        """Choose the slot the next worker writes; the child inherits the choice."""
        if self.exporter is not None:
            slot = self.exporter.counters.free_slot()
            self.exporter.next_slot = slot
            self._pending_slot = slot

    def after_spawn(self, pid: Any) -> None:
        """In the master: the new worker ``pid`` owns the slot chosen for it."""
        if self.exporter is not None and self._pending_slot is not None and isinstance(pid, int):
            self.exporter.counters.own(self._pending_slot, pid)
        self._pending_slot = None

    def peek(self, *, always: bool = False) -> dict[int, os.waitid_result | None]:
        """How the workers that have ended ended, without reaping them (gunicorn reaps).

        Args:
            always: look even with metrics off (the arbiter wants it while booting).
        """
        if self.exporter is None and not always:
            return {}
        ended: dict[int, os.waitid_result | None] = {}
        for pid in list(self.arbiter.WORKERS):
            with contextlib.suppress(ChildProcessError, OSError):
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is not None:
                    ended[pid] = info
        return ended

    def reaped(self, before: set[int], ended: dict[int, os.waitid_result | None]) -> None:
        """Fold the slots of reaped workers; count a restart for each while serving."""
        if self.exporter is None:
            return
        for pid in before - set(self.arbiter.WORKERS):
            self.exporter.counters.retire(pid)
            if not self.exporter.draining:
                reason = _reason(ended.get(pid))
                self.exporter.sources.restarts[reason] += 1

    def draining(self) -> None:
        """The server stops: readiness fails from now on."""
        if self.exporter is not None:
            self.exporter.draining = True
