"""The request slots of a threaded worker (gthread, tornado): ``threads`` of them, and a
thread that waits on its client gives its slot back while it waits.

A pool thread that serves a slow upload, or writes to a client that reads slowly, spends
its time waiting for the client, not running the app. Holding one of the worker's
``threads`` slots meanwhile lets a few such clients take the whole capacity. Here the
pool has up to :data:`AWAY_MAX` threads more than ``threads``; a thread about to wait on
its client *steps away* (its slot goes to the next request) and takes a slot again before
it goes on with the app. At most ``threads`` requests run app code at once, as before
(but for one that waited :data:`BACK_WAIT` seconds for its slot: it goes on, lest a lock
it holds deadlock the worker); at most :data:`AWAY_MAX` more wait on their clients, each
within its deadlines (past that number a waiting thread keeps its slot, as without this).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["AWAY_MAX", "BACK_WAIT", "Away", "Slots"]

#: per worker, how many requests may wait on their clients without holding a slot
AWAY_MAX = 256
#: seconds a request back from its client waits for a slot before it goes on without one
BACK_WAIT = 2.0


class Slots:
    """``threads`` request slots, and the count of requests that stepped away from theirs.

    Args:
        threads: the slots (the worker's ``threads``).
        wake: called (on the stepping thread) after a slot was given back by a thread
            that waits on its client, so that the worker can accept again at once.
        away_max: at most this many requests are away at once.
        meter: told ``+1`` and ``-1`` as requests step away and back (``metrics``).
    """

    __slots__ = ("_free", "_lock", "_meter", "_owed", "_wake", "away", "away_max", "pool_size")

    def __init__(
        self,
        threads: int,
        wake: Callable[[], object],
        away_max: int = AWAY_MAX,
        meter: Callable[[int], object] | None = None,
    ) -> None:
        self._free = threading.Semaphore(threads)
        self._lock = threading.Lock()
        self._wake = wake
        self._meter = meter
        #: requests waiting on their clients without a slot (read on the worker's loop)
        self.away = 0
        self.away_max = away_max
        #: the threads the worker's pool needs: the slots and the requests away from them
        self.pool_size = threads + away_max
        #: slots taken without waiting for them (see :meth:`step_back`), to pay back
        self._owed = 0

    def take(self) -> None:
        """Wait for a free slot (a request begins, or comes back from its client)."""
        self._free.acquire()

    def give(self) -> None:
        """Give a slot back (the request ended), or pay back one a request went on without."""
        if self._owed:
            with self._lock:
                if self._owed:
                    self._owed -= 1
                    return
        self._free.release()

    def step_away(self) -> bool:
        """The calling thread is about to wait on its client: give its slot to the next
        request. False (the slot is kept) when :attr:`away_max` requests are away already."""
        with self._lock:
            if self.away >= self.away_max:
                return False
            self.away += 1
        if self._meter is not None:
            self._meter(1)
        self._free.release()
        self._wake()
        return True

    def step_back(self) -> None:
        """The wait on the client is over: take a slot again before the app goes on (it
        counts as away until it has one, so that the worker keeps accepting meanwhile: a
        new request then waits its turn behind it).

        The wait for a slot lasts at most :data:`BACK_WAIT` seconds; past it the request
        goes on without one, and the next request to end pays it back. The requests in
        the slots may be waiting for this one (an app lock it holds across its upload or
        response): waiting for good would deadlock the worker."""
        got = self._free.acquire(timeout=BACK_WAIT)
        with self._lock:
            self.away -= 1
            if not got:
                self._owed += 1
        if self._meter is not None:
            self._meter(-1)


class Away:
    """A pool thread's wait on work its event loop does on the client's connection: the
    loop calls :meth:`now` when that work is about to wait on the client (the thread's
    slot goes to the next request), the thread calls :meth:`back` once it has the result."""

    __slots__ = ("slots", "stepped")

    def __init__(self, slots: Slots | None) -> None:
        self.slots = slots
        self.stepped = False

    def now(self) -> None:
        """On the loop: the client is behind; give the waiting thread's slot away."""
        if not self.stepped and self.slots is not None:
            self.stepped = self.slots.step_away()

    def back(self) -> None:
        """On the thread: the wait is over; take a slot again if it was given away."""
        if self.stepped and self.slots is not None:
            self.stepped = False
            self.slots.step_back()
