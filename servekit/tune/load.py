"""A bounded load generator: keep-alive HTTP/1.1 from one thread per connection, loopback only.

Each client sends the request paths in their weighted order until the slice ends,
then finishes the request it has in flight; no request outlives ``hard_stop``.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["LoadOutcome", "RequestSpec", "drive"]

#: a fresh connection after a failure is delayed this long, so a dead server is not hammered
_FAILURE_PAUSE = 0.02
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True)
class RequestSpec:
    """What each request is: method, weighted paths, body and extra headers."""

    method: str = "GET"
    paths: tuple[tuple[str, int], ...] = (("/", 1),)
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def rotation(self) -> list[str]:
        """The paths in a weighted order: ``/a=2,/b`` gives ``/a, /b, /a``."""
        order: list[str] = []
        left = dict(self.paths)
        while left:
            for path in list(left):
                order.append(path)
                left[path] -= 1
                if not left[path]:
                    del left[path]
        return order


@dataclass
class LoadOutcome:
    """What one slice of load saw."""

    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    client_cpu: float = 0.0


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0
    last: float = 0.0


def _send(conn: http.client.HTTPConnection, spec: RequestSpec, path: str, timeout: float) -> int:
    conn.timeout = timeout
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    conn.request(spec.method, path, body=spec.body, headers=dict(spec.headers))
    response = conn.getresponse()
    response.read()
    return response.status


def _once(
    conn: http.client.HTTPConnection, spec: RequestSpec, path: str, timeout: float
) -> int | str:
    """One request (retried once when a kept-alive connection turns out closed): its
    status, or the kind of failure."""
    reused = conn.sock is not None
    try:
        try:
            return _send(conn, spec, path, timeout)
        except _STALE:
            if not reused:
                raise
            conn.close()
            return _send(conn, spec, path, timeout)
    except TimeoutError:
        conn.close()
        return "timeout"
    except (OSError, http.client.HTTPException):
        conn.close()
        return "connection"


class _Window:
    """When the slice began and when clients stop sending (set as the barrier releases)."""

    def __init__(self, seconds: float, hard_stop: float) -> None:
        self.seconds = seconds
        self.hard_stop = hard_stop
        self.began = self.end = 0.0

    def open(self) -> None:
        self.began = time.monotonic()
        self.end = min(self.began + self.seconds, self.hard_stop)


def _client(
    address: tuple[str, int],
    spec: RequestSpec,
    offset: int,
    window: _Window,
    request_timeout: float,
    start: threading.Barrier,
    tally: _Tally,
) -> None:
    order = spec.rotation()
    conn = http.client.HTTPConnection(*address, timeout=request_timeout)
    cpu = time.thread_time()
    try:
        start.wait()
        i = offset
        while (now := time.monotonic()) < window.end:
            timeout = min(request_timeout, window.hard_stop - now)
            if timeout <= 0:
                break
            began = time.perf_counter()
            result = _once(conn, spec, order[i % len(order)], timeout)
            i += 1
            if isinstance(result, str):
                tally.failures[result] += 1
                time.sleep(_FAILURE_PAUSE)
                continue
            tally.latencies.append(time.perf_counter() - began)
            tally.statuses[result] += 1
            tally.last = time.monotonic()
    except threading.BrokenBarrierError:
        pass
    finally:
        conn.close()
        tally.cpu = time.thread_time() - cpu


def drive(
    url: str,
    spec: RequestSpec,
    concurrency: int,
    seconds: float,
    *,
    hard_stop: float,
    request_timeout: float = 30.0,
    tick: Callable[[], None] | None = None,
    tick_every: float = 0.05,
) -> LoadOutcome:
    """Keep ``concurrency`` connections busy for ``seconds``; no request lasts past ``hard_stop``.

    Args:
        url: the server's ``http://127.0.0.1:PORT`` URL.
        spec: the requests to send.
        concurrency: connections, one thread each.
        seconds: how long new requests are sent.
        hard_stop: a ``time.monotonic()`` instant that bounds every request.
        request_timeout: seconds one request may take.
        tick: called every ``tick_every`` seconds while the clients run (to sample the server).

    Returns:
        Latencies of the answered requests, status counts, failures, the clients' CPU
        seconds, and the slice's length (first send to last answer).
    """
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    window = _Window(seconds, hard_stop)
    start = threading.Barrier(concurrency + 1, action=window.open)
    tallies = [_Tally() for _ in range(concurrency)]
    threads = [
        threading.Thread(
            target=_client,
            args=(address, spec, i, window, request_timeout, start, tallies[i]),
            daemon=True,
            name=f"servekit-tune-{i}",
        )
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    try:
        start.wait(timeout=10)
    except threading.BrokenBarrierError:
        return LoadOutcome(concurrency)
    while (alive := [t for t in threads if t.is_alive()]) and time.monotonic() < hard_stop + 1:
        if tick is not None:
            tick()
        alive[0].join(tick_every)
    for thread in threads:
        thread.join(max(0.0, hard_stop - time.monotonic()) + 1.0)
    return _merge(tallies, concurrency, window.began)


def _merge(tallies: list[_Tally], concurrency: int, began: float) -> LoadOutcome:
    outcome = LoadOutcome(concurrency)
    last = began
    for tally in tallies:
        outcome.latencies += tally.latencies
        outcome.statuses.update(tally.statuses)
        outcome.failures.update(tally.failures)
        outcome.client_cpu += tally.cpu
        last = max(last, tally.last)
    outcome.seconds = max(last - began, 1e-6)
    return outcome
