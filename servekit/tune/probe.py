"""The probe: the app under a roomy gthread server at rising concurrency, and what it is.

At concurrency 1 nothing queues, so a request's time on the server is its latency
less the client's own CPU time; the server's CPU time per request against that
says how much of a request is computation and how much is waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servekit.tune.measure import Cell, Clock, measure
from servekit.tune.servers import serving
from servekit.tune.settings import TuneSettings

__all__ = [
    "CPU_BOUND",
    "IO_BOUND",
    "PROBE_STRATEGY",
    "Probe",
    "classify",
    "probe_levels",
    "probe_options",
    "run_probe",
]

PROBE_STRATEGY = "gthread"
#: at least this share of a request on a CPU is CPU-bound; at most IO_BOUND is I/O-bound
CPU_BOUND = 0.7
IO_BOUND = 0.3
#: a level that adds less than this to the best throughput so far ends the probe
_RISE = 1.15
_WARM_UP = 0.3

Progress = Callable[[str], None]


@dataclass
class Probe:
    """What the probe measured."""

    strategy: str
    options: dict[str, Any]
    levels: list[Cell] = field(default_factory=list)
    stopped: str = "reached --max-concurrency"
    startup_s: float = 1.0

    @property
    def first(self) -> Cell | None:
        """The concurrency-1 point."""
        return self.levels[0] if self.levels and self.levels[0].requests else None

    @property
    def server_ms(self) -> float:
        """A request's time on the server at concurrency 1 (latency less client CPU), in ms."""
        first = self.first
        if first is None:
            return 0.0
        mean = sum(first.latencies) / first.requests
        own = first.client_cpu / first.requests
        return max(mean - own, first.server_cpu / first.requests, 1e-6) * 1000

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request at concurrency 1, in ms."""
        return self.first.cpu_ms_per_request if self.first is not None else 0.0

    @property
    def cpu_fraction(self) -> float:
        """The share of a request's server time spent on a CPU (0..1)."""
        return min(1.0, self.cpu_ms / self.server_ms) if self.server_ms else 0.0

    @property
    def classification(self) -> str:
        """``cpu-bound``, ``io-bound`` or ``mixed``."""
        return classify(self.cpu_fraction)

    @property
    def knee(self) -> int:
        """The least concurrency that reached 90% of the best throughput."""
        served = [c for c in self.levels if c.requests]
        if not served:
            return 1
        best = max(c.throughput for c in served)
        return min(c.concurrency for c in served if c.throughput >= 0.9 * best)

    @property
    def rss_per_worker(self) -> float | None:
        """Resident memory of one worker, in bytes (the most seen)."""
        sizes = [c.rss_per_worker for c in self.levels if c.rss_per_worker is not None]
        return max(sizes) if sizes else None

    def p99_target_ms(self) -> float:
        """The default p99 target: 3x the p99 at concurrency 1, at least 25 ms."""
        first = self.first
        return max(25.0, 3 * first.latency_ms(99)) if first is not None else 1000.0


def classify(fraction: float) -> str:
    """The nature of a request from the share of its time spent on a CPU."""
    if fraction >= CPU_BOUND:
        return "cpu-bound"
    if fraction <= IO_BOUND:
        return "io-bound"
    return "mixed"


def probe_levels(max_concurrency: int) -> list[int]:
    """1, 2, 4, ... up to ``max_concurrency`` (which is always the last)."""
    levels, level = [], 1
    while level < max_concurrency:
        levels.append(level)
        level *= 2
    return [*levels, max_concurrency]


def probe_options(cpus: int, max_concurrency: int, max_workers: int | None = None) -> dict[str, Any]:
    """gthread with a worker per CPU and room for ``max_concurrency`` requests at once."""
    workers = max(1, min(cpus, max_concurrency, max_workers or cpus))
    return {"workers": workers, "threads": math.ceil(max_concurrency / workers)}


def _stop_reason(probe: Probe, cell: Cell, until: float, step: float) -> str | None:
    if cell.error_rate > 0.1:
        return f"errors at concurrency {cell.concurrency}"
    earlier = [c.throughput for c in probe.levels[:-1]]
    if earlier and cell.throughput < _RISE * max(earlier):
        return f"throughput stopped rising at concurrency {cell.concurrency}"
    if time.monotonic() + step > until:
        return "its share of --time-limit was used"
    return None


def run_probe(
    settings: TuneSettings,
    options: dict[str, Any],
    step: float,
    until: float,
    clock: Clock,
    log_dir: Path,
    progress: Progress,
) -> Probe:
    """Serve the app with gthread ``options`` and load it at rising concurrency.

    Raises:
        ServerStartError: the app did not start.
    """
    probe = Probe(PROBE_STRATEGY, options)
    started = time.monotonic()
    spec, timeout = settings.request, settings.request_timeout
    with serving(settings, PROBE_STRATEGY, options, log_dir, clock.left()) as server:
        probe.startup_s = time.monotonic() - started
        warm = min(4, settings.max_concurrency)
        measure(server.pid, server.url, spec, warm, _WARM_UP, clock, timeout)
        for level in probe_levels(settings.max_concurrency):
            if clock.left() < 0.3:
                probe.stopped = "the time limit was reached"
                break
            cell = measure(server.pid, server.url, spec, level, step, clock, timeout)
            probe.levels.append(cell)
            progress(
                f"probe: concurrency {level}: {cell.throughput:.1f} req/s, "
                f"p99 {cell.latency_ms(99):.1f} ms, {cell.cpu_ms_per_request:.2f} ms CPU/request"
            )
            reason = _stop_reason(probe, cell, until, step)
            if reason is not None:
                probe.stopped = reason
                break
    return probe
