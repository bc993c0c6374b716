"""One measurement: load on a server, with its CPU, memory and the machine's load around it."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from servekit.tune.load import RequestSpec, drive
from servekit.tune.proc import process_tree, sample, socket_count, worker_rss

__all__ = ["Cell", "Clock", "measure", "percentile"]

#: time for a server to close the connections its clients have closed
_SETTLE = 0.05


@dataclass
class Clock:
    """The run's time limit: a deadline, with time kept back for stopping servers."""

    limit: float
    reserve: float = 2.0
    started: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        """The instant by which every request must be over."""
        return self.started + self.limit - self.reserve

    def left(self) -> float:
        """Seconds of load that may still start."""
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass
class Cell:
    """Load at one concurrency on one server: the sum of the slices it got."""

    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    own_cpu: float = 0.0
    others_cpu: float = 0.0
    rss_per_worker: float | None = None
    #: the most connections the server held at once (accepted, not queued in the kernel)
    at_once: int = 0

    def add(self, other: Cell) -> None:
        """Fold another slice of the same point into this one."""
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.failures.update(other.failures)
        self.server_cpu += other.server_cpu
        self.client_cpu += other.client_cpu
        self.own_cpu += other.own_cpu
        self.others_cpu += other.others_cpu
        self.at_once = max(self.at_once, other.at_once)
        if other.rss_per_worker is not None:
            self.rss_per_worker = max(self.rss_per_worker or 0.0, other.rss_per_worker)

    @property
    def requests(self) -> int:
        """Requests answered (with any status)."""
        return len(self.latencies)

    @property
    def errors(self) -> int:
        """Answers outside 2xx/3xx, timeouts and connection failures."""
        bad = sum(n for status, n in self.statuses.items() if not 200 <= status < 400)
        return bad + sum(self.failures.values())

    @property
    def error_rate(self) -> float:
        """Errors per request tried."""
        tried = self.requests + sum(self.failures.values())
        return self.errors / tried if tried else 1.0

    @property
    def throughput(self) -> float:
        """Answered requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, pct: float) -> float:
        """A latency percentile, in milliseconds."""
        return percentile(self.latencies, pct) * 1000

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU per answered request, in milliseconds."""
        return self.server_cpu / self.requests * 1000 if self.requests else 0.0

    def describe(self) -> dict[str, Any]:
        """The point as plain data (one row of the JSON output)."""
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.latency_ms(50), 2),
            "p99_ms": round(self.latency_ms(99), 2),
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": dict(sorted(self.failures.items())),
            "cpu_ms_per_request": round(self.cpu_ms_per_request, 3),
            "served_at_once": self.at_once,
            "rss_mib_per_worker": None
            if self.rss_per_worker is None
            else round(self.rss_per_worker / (1 << 20), 1),
        }


def measure(
    pid: int,
    url: str,
    spec: RequestSpec,
    concurrency: int,
    seconds: float,
    clock: Clock,
    request_timeout: float,
) -> Cell:
    """Load the server at ``url`` (process tree ``pid``) for ``seconds`` and read /proc around it."""
    members = process_tree(pid)
    at_rest = socket_count(members)
    counts: list[int] = [at_rest]

    def count_held() -> None:
        counts.append(socket_count(members))

    before, began = sample(pid), time.monotonic()
    outcome = drive(
        url,
        spec,
        concurrency,
        seconds,
        hard_stop=clock.deadline,
        request_timeout=request_timeout,
        tick=count_held,
    )
    after, wall = sample(pid), time.monotonic() - began
    # connections of the previous slice may still have been closing when ``at_rest`` was
    # counted; this slice's are closed by the clients now
    time.sleep(_SETTLE)
    at_rest = min(at_rest, socket_count(members))
    server = after.server_cpu - before.server_cpu
    own = after.own_cpu - before.own_cpu
    busy = after.busy - before.busy
    cell = Cell(
        concurrency,
        seconds=outcome.seconds,
        latencies=outcome.latencies,
        statuses=outcome.statuses,
        failures=outcome.failures,
        server_cpu=server,
        client_cpu=outcome.client_cpu,
        own_cpu=own,
        others_cpu=max(0.0, busy - server - own) * outcome.seconds / max(wall, 1e-6),
        rss_per_worker=worker_rss(pid),
        # a connection just closed may linger a moment beside its successor: the clients
        # never hold more than ``concurrency`` connections
        at_once=max(0, min(max(counts) - at_rest, concurrency)),
    )
    return cell
