"""Stop signals under granian, taken by ``sigwaitinfo`` threads instead of Python handlers.

granian's worker handles SIGINT/SIGTERM with Python handlers, which run only on the main
thread, and that thread sleeps in an untimed wait: when the kernel hands the signal to
one of the Rust or blocking threads, the handler never runs and the worker serves on.
Ctrl+C to a terminal's process group hung a worker (and so the whole shutdown) in 5 of
14 runs. Here every thread of a process blocks the stop signals and one thread waits for
them with ``sigwaitinfo``, which does not depend on which thread the kernel chose:

* in the master (:func:`master_signals`): SIGINT and SIGTERM start the drain;
* in a worker (:func:`worker_stop_event`, granian's ``set_sync_signals``): SIGINT is
  ignored (Ctrl+C reaches the whole group; the master decides) and SIGTERM is obeyed
  only from the master, or once the master is gone, so a signal to the whole group
  (``docker stop`` of a shell, systemd's ``KillMode=control-group``) cannot stop a
  worker before the master has served what the kernel queued. A worker whose master
  dies (``kill -9``) is sent SIGTERM by the kernel and stops, instead of serving on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["STOP_SIGNALS", "master_signals", "worker_stop_event"]

STOP_SIGNALS = frozenset((signal.SIGINT, signal.SIGTERM))


def block_stop_signals() -> None:
    """Block SIGINT and SIGTERM in this thread (and every thread or fork it starts later)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def master_signals(on_stop: Callable[[str], None]) -> Iterator[None]:
    """In the master's main thread: every SIGINT/SIGTERM calls ``on_stop(name)``.

    Two paths, so that no signal is lost whichever thread the kernel gives it to:
    the stop signals are blocked in this thread (and so in the workers and threads it
    starts) and taken by a ``sigwaitinfo`` thread; a signal that lands on a thread
    started earlier (the ``metrics`` exporter's) runs Python's C-level handler there,
    which writes it to the wakeup fd that a second thread reads. The handlers, the
    wakeup fd and the mask are put back afterwards.
    """
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    done = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        on_stop(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    _forget_wakeup_fd_in_children(write_fd)
    block_stop_signals()

    def wait() -> None:
        while not done.is_set():
            info = signal.sigwaitinfo(STOP_SIGNALS)
            if not done.is_set():
                on_stop(signal.Signals(info.si_signo).name)

    def read() -> None:
        while data := os.read(read_fd, 64):
            for signum in data:
                if signum in STOP_SIGNALS and not done.is_set():
                    on_stop(signal.Signals(signum).name)

    waiter = threading.Thread(target=wait, name="servekit-signals", daemon=True)
    reader = threading.Thread(target=read, name="servekit-signal-fd", daemon=True)
    waiter.start()
    reader.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old_wakeup)
        _forget_wakeup_fd_in_children(-1)
        os.close(write_fd)  # ends the reader
        with contextlib.suppress(OSError):
            signal.pthread_kill(waiter.ident or 0, signal.SIGTERM)  # ends the waiter
        waiter.join(1.0)
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


#: the write end of the master's wakeup pipe while a server runs (-1: none)
_wakeup_fd = -1
_registered = False


def _forget_wakeup_fd_in_children(fd: int) -> None:
    """A forked worker must not write its signals to the master's wakeup pipe."""
    global _registered, _wakeup_fd
    _wakeup_fd = fd
    if not _registered:
        _registered = True
        os.register_at_fork(after_in_child=_reset_wakeup_fd)


def _reset_wakeup_fd() -> None:
    with contextlib.suppress(ValueError, OSError):
        old = signal.set_wakeup_fd(-1)
        if old != _wakeup_fd or old == -1:
            signal.set_wakeup_fd(old)  # someone else's: leave it


def worker_stop_event(master: int) -> Any:
    """Stands in for ``granian._signals.set_sync_signals`` in a worker forked by ``master``.

    Returns granian's ``WorkerSignal``, set when the worker is to stop.
    """
    from granian._granian import WorkerSignal

    event = WorkerSignal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        while True:
            info = signal.sigwaitinfo({signal.SIGTERM})
            if info.si_pid == master or os.getppid() != master:
                event.set()
                return

    threading.Thread(target=wait, name="servekit-worker-signals", daemon=True).start()
    _stop_with_master()
    if os.getppid() != master:  # the master died before the watch was set
        event.set()
    return event


def _stop_with_master() -> None:
    """Ask Linux to send this worker SIGTERM when its master dies (no orphan keeps serving)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
