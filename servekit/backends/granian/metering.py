"""The ``metrics`` option under granian: worker slots, restarts, listener and worker sources.

The exporter runs in granian's master, as in servekit's gunicorn arbiter. Before each
worker is forked the master picks a free slot of the shared counters (the child
inherits the choice and writes only that slot); once the worker has a pid the slot is
its; when a worker ends, its slot is folded into the retired totals and, if the server
was not stopping, a restart is counted by how it ended (``exit``, ``error``, ``signal``).
Everything here is a no-op when ``metrics`` is off.
"""

from __future__ import annotations

import socket
from typing import Any

from servekit import metrics

__all__ = ["Metering"]


def _reason(exitcode: int | None) -> str:
    if exitcode is None or exitcode > 0:
        return "error"
    return "signal" if exitcode < 0 else "exit"


class Metering:
    """Ties one granian server (``server.wrks``) to the active exporter, if any."""

    def __init__(self, listener: socket.socket) -> None:
        self.exporter = metrics.active()
        self.workers: list[Any] = []
        if self.exporter is not None:
            self.exporter.sources.listeners = lambda: [listener]
            self.exporter.sources.workers = lambda: sum(w.is_alive() for w in self.workers)

    def watch(self, workers: list[Any]) -> None:
        """Count the live workers of this list (granian's ``wrks``)."""
        self.workers = workers

    def before_fork(self) -> None:
        """Choose the slot the next worker writes (inherited through the fork)."""
        if self.exporter is not None:
            self.exporter.next_slot = self.exporter.counters.free_slot()

    def after_fork(self, pid: int | None) -> None:
        """The new worker ``pid`` owns the slot chosen for it."""
        exporter = self.exporter
        if exporter is not None and exporter.next_slot is not None and pid is not None:
            exporter.counters.own(exporter.next_slot, pid)

    def ended(self, pid: int | None, exitcode: int | None) -> None:
        """Worker ``pid`` is gone: fold its slot; count a restart unless the server stops."""
        if self.exporter is None or pid is None:
            return
        self.exporter.counters.retire(pid)
        if not self.exporter.draining:
            self.exporter.sources.restarts[_reason(exitcode)] += 1

    def draining(self) -> None:
        """The server stops: readiness fails from now on."""
        if self.exporter is not None:
            self.exporter.draining = True
