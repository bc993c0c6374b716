"""Pipes between gunicorn's workers and servekit's master about booting.

A worker says "app loaded" (:class:`BootReport`; the master logs ``serving`` on the
first one) or "app failed to load" with servekit's message (:class:`BootFailure`;
the master prints it once and exits 2, instead of every worker printing it among
gunicorn's lines). The boot hook also makes SIGINT drain like SIGTERM in workers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
from typing import Any

from servekit.backends.gunicorn.workers import drain

__all__ = ["BootFailure", "BootReport"]


#: ``os.write`` as imported in the master. eventlet's monkey-patched ``os.write`` retries
#: EPIPE forever: a worker that booted after the master stopped reading would spin at
#: 100% CPU inside this hook and never serve (every replacement worker did).
_unpatched_write = os.write


class BootFailure:
    """A pipe on which a worker whose app failed to import sends the message to the master.

    gunicorn prints the error in every worker and logs its own lines about it; with
    this the worker leaves quietly and the master prints servekit's one line, once.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.message: str | None = None

    def report(self, message: str) -> None:
        """In a worker: send ``message`` (cut to one atomic pipe write)."""
        line = " ".join(message.split("\n"))
        data = line.encode("utf-8", "replace")[: select.PIPE_BUF - 1] + b"\n"
        with contextlib.suppress(OSError):
            _unpatched_write(self.write_fd, data)

    def poll(self) -> str | None:
        """In the master: the first failure reported, if any."""
        if self.message is None:
            try:
                data = os.read(self.read_fd, select.PIPE_BUF)
            except BlockingIOError:
                return None
            # Several workers may have failed: the first line is the first report.
            self.message = data.decode("utf-8", "replace").split("\n")[0] or None
        return self.message


class BootReport:
    """A pipe on which each worker says "app loaded"; the master announces on the first.

    servekit logs ``serving`` only once a worker has really loaded the app, so an
    app that fails to import never looks as if it had started.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.done = False
        #: the arbiter, whose copy in a worker holds the signals it got while booting
        self.arbiter: Any = None

    def worker_booted(self, worker: Any) -> None:
        """``post_worker_init`` hook: report the boot and make SIGINT drain like SIGTERM.

        Also act on a stop the worker was told while it booted: until gunicorn installs
        the worker's handlers, a signal runs the master's handler inherited with the
        fork, which only queues it in the worker's copy of the master's signal queue.
        A worker spawned just before SIGTERM would otherwise never notice, serve on,
        and hold the shutdown until graceful_timeout ends with a SIGKILL.
        """
        signal.signal(signal.SIGINT, signal.getsignal(signal.SIGTERM))
        if drain.server_stopping():
            # Booted during a graceful stop (spawned to serve what is queued).
            worker.handle_exit(signal.SIGTERM, None)
        elif self.arbiter is not None:
            missed = []
            with contextlib.suppress(queue.Empty):
                while True:
                    missed.append(self.arbiter.SIG_QUEUE.get_nowait())
            if signal.SIGQUIT in missed:
                worker.handle_quit(signal.SIGQUIT, None)
            elif signal.SIGTERM in missed or signal.SIGINT in missed:
                worker.handle_exit(signal.SIGTERM, None)
        if self.done:
            return  # forked after the announcement: nobody reads any more
        # OSError: the master announced meanwhile and closed its end (EPIPE).
        with contextlib.suppress(OSError):
            _unpatched_write(self.write_fd, b"1")

    def poll(self) -> bool:
        """In the master: whether a worker has booted (first time only)."""
        if self.done:
            return False
        try:
            booted = bool(os.read(self.read_fd, 512))
        except BlockingIOError:
            return False
        if booted:
            self.done = True
            os.close(self.read_fd)
        return booted
