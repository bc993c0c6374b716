"""Request counters in memory shared by the master and every worker, and the WSGI meter.

The block is an anonymous shared mapping made before any worker is forked. Each
process writes only its own slot (the master gives a worker its slot when it spawns
it), so no lock is shared between processes: a worker killed mid-request cannot
leave one held. Within a process a lock keeps threads from losing increments. When
a worker dies the master folds its slot into the "retired" totals and zeroes it, so
counters never go backwards and a dead worker's requests are not counted in flight.
"""

from __future__ import annotations

import bisect
import mmap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["BUCKETS", "Counters", "SlotWriter", "meter"]

#: the C lock, taken before gevent or eventlet can patch ``threading`` in a worker: a
#: green lock costs several microseconds, and nothing yields while it is held
_Lock = threading.Lock

#: upper bounds (seconds) of the request duration histogram; +Inf is implied
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
_BUCKETS = len(BUCKETS)

# One slot: pid, requests started, requests waiting on their client (holding no thread),
# requests ended per status class, bucket counts, sum (us). In flight is started minus
# ended, and the count is the sum of the classes: a request writes four words, not six.
_PID, _STARTED, _AWAY, _STATUS = 0, 1, 2, 3
_BUCKET = _STATUS + len(STATUS_CLASSES)
_SUM_US = _BUCKET + len(BUCKETS)
_WORD = 8
#: words per slot, rounded up to whole 64-byte cache lines: two workers on two cores
#: never write the same line
SLOT_WIDTH = -(-(_SUM_US + 1) // 8) * 8


class Counters:
    """``slots`` writer slots plus one slot of retired totals, shared across ``fork()``."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, (slots + 1) * SLOT_WIDTH * _WORD)
        self._words = memoryview(self._map).cast("q")
        self._retired = slots
        self._owner: dict[int, int] = {}  # master only: slot -> pid

    def _base(self, slot: int) -> int:
        return slot * SLOT_WIDTH

    def claim(self, pid: int) -> int | None:
        """In the master: a free slot for a new worker ``pid`` (``None`` when all are taken)."""
        for slot in range(self.slots):
            if slot not in self._owner:
                self._owner[slot] = pid
                self._words[self._base(slot) + _PID] = pid
                return slot
        return None

    def own(self, slot: int, pid: int) -> None:
        """Record that ``pid`` writes ``slot`` (when the slot was chosen before the fork)."""
        self._owner[slot] = pid
        self._words[self._base(slot) + _PID] = pid

    def free_slot(self) -> int | None:
        """A slot nobody owns, without taking it."""
        return next((s for s in range(self.slots) if s not in self._owner), None)

    def retire(self, pid: int) -> None:
        """In the master: fold the slot of dead worker ``pid`` into the totals and free it."""
        for slot, owner in list(self._owner.items()):
            if owner != pid:
                continue
            base, total = self._base(slot), self._base(self._retired)
            words = self._words
            ended = sum(words[base + _STATUS : base + _BUCKET])
            words[total + _STARTED] += ended  # its unfinished requests are not in flight
            for i in range(_STATUS, _SUM_US + 1):
                words[total + i] += words[base + i]
            for i in range(SLOT_WIDTH):
                words[base + i] = 0
            del self._owner[slot]

    def writer(self, slot: int) -> SlotWriter:
        """The writer for ``slot`` (call it in the process that owns the slot)."""
        return SlotWriter(self._words, self._base(slot))

    def snapshot(self) -> dict[str, Any]:
        """Totals over every slot: in flight (and how many of those wait on their client),
        requests per class, the histogram."""
        sums = [0] * SLOT_WIDTH
        words = self._words
        for slot in range(self.slots + 1):
            base = self._base(slot)
            for i in range(_STARTED, _SUM_US + 1):
                sums[i] += words[base + i]
        cumulative, buckets = 0, []
        for i, bound in enumerate(BUCKETS):
            cumulative += sums[_BUCKET + i]
            buckets.append((bound, cumulative))
        count = sum(sums[_STATUS:_BUCKET])
        in_flight = max(0, sums[_STARTED] - count)
        return {
            "in_flight": in_flight,
            "away": min(in_flight, max(0, sums[_AWAY])),
            "requests": dict(zip(STATUS_CLASSES, sums[_STATUS:_BUCKET], strict=True)),
            "buckets": buckets,
            "count": count,
            "sum": sums[_SUM_US] / 1e6,
        }


class SlotWriter:
    """One process's writes to its slot: a request begins, a request ends."""

    def __init__(self, words: memoryview, base: int) -> None:
        self._words = words
        self._base = base
        self._lock = _Lock()

    def begin(self) -> None:
        """A request reached the app."""
        with self._lock:
            self._words[self._base + _STARTED] += 1

    def end(self, status: int, seconds: float) -> None:
        """A request's response is done (or failed) with ``status`` after ``seconds``."""
        klass = _STATUS + (status // 100 - 1 if 100 <= status < 600 else 5)
        bucket = bisect.bisect_left(BUCKETS, seconds)
        words, base = self._words, self._base
        with self._lock:
            words[base + klass] += 1
            if bucket < _BUCKETS:
                words[base + _BUCKET + bucket] += 1
            words[base + _SUM_US] += int(seconds * 1e6)

    def away(self, change: int) -> None:
        """``change`` requests began (+) or stopped (-) waiting on their client without a thread."""
        with self._lock:
            self._words[self._base + _AWAY] += change


class _Request:
    """One metered request: records the status, then reports the end when closed."""

    __slots__ = ("_slot", "_start_response", "body", "started", "status")

    def __init__(self, slot: SlotWriter, start_response: Callable[..., Any]) -> None:
        self._slot = slot
        self._start_response = start_response
        self.body: Any = None
        self.started = time.perf_counter()
        self.status = 500

    def start_response(self, head: str, headers: Any, exc_info: Any = None) -> Any:
        code = head[:3]
        self.status = int(code) if code.isdigit() else 0
        if exc_info:
            return self._start_response(head, headers, exc_info)
        return self._start_response(head, headers)

    def done(self) -> None:
        slot, self._slot = self._slot, None  # type: ignore[assignment]
        if slot is not None:
            slot.end(self.status, time.perf_counter() - self.started)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.done()


def meter(app: Callable[..., Any], writer: Callable[[], SlotWriter | None]) -> Callable[..., Any]:
    """Wrap a WSGI app so that each request is counted in flight, then by status and time.

    Args:
        app: the WSGI callable.
        writer: returns this process's slot writer (looked up per request, since a
            worker learns its slot after the app was wrapped), or ``None`` to skip.
    """

    def metered(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        slot = writer()
        if slot is None:
            return app(environ, start_response)
        request = _Request(slot, start_response)
        slot.begin()
        try:
            body: Any = app(environ, request.start_response)
        except BaseException:
            request.status = 500  # nothing went out yet: the server answers 500
            request.done()
            raise
        wrapper: Any = environ.get("wsgi.file_wrapper")
        if wrapper is not None and type(body) is wrapper:
            # Keep gunicorn's sendfile() path: report the end from the wrapper's close.
            original = body.close

            def close_then_count() -> None:
                try:
                    original()
                finally:
                    request.done()

            try:
                body.close = close_then_count
                return body
            except AttributeError:
                pass
        request.body = body
        return request

    return metered

