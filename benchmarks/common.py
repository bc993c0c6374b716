"""What every section shares: settings, progress output, medians, one measured load run."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from benchmarks.load import LoadResult, run_load
from benchmarks.procs import Server, idle_cpu_seconds

__all__ = [
    "Settings",
    "measure",
    "median",
    "quantiles",
    "rounds",
    "say",
]

# wrk takes whole seconds; every duration here is one.

T = TypeVar("T")
_START = time.monotonic()


@dataclass(frozen=True)
class Settings:
    """How long and how often each section measures (``--quick`` shrinks everything)."""

    overhead_seconds: float = 2.0
    overhead_rounds: int = 15
    overhead_connections: int = 8
    overhead_workers: int = 2
    startup_rounds: int = 7
    import_rounds: int = 11
    ceiling_seconds: float = 2.0
    ceiling_rounds: int = 3
    ceiling_levels: tuple[int, ...] = (1, 8, 32, 128, 512)
    io_ms: int = 50
    cpu_seconds: float = 2.0
    cpu_rounds: int = 5
    cpu_connections: int = 16
    warmup_seconds: float = 1.0
    memory_repeat: int = 3
    sections: tuple[str, ...] = ("imports", "startup", "overhead", "ceiling", "cpu")
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls, sections: tuple[str, ...]) -> Settings:
        """A smoke-test run: every section, a fraction of the time."""
        return cls(
            overhead_seconds=1.0,
            overhead_connections=8,
            overhead_rounds=2,
            startup_rounds=2,
            import_rounds=3,
            ceiling_seconds=1.0,
            ceiling_rounds=1,
            ceiling_levels=(1, 32, 512),
            cpu_seconds=1.0,
            cpu_rounds=1,
            warmup_seconds=1.0,
            memory_repeat=1,
            sections=sections,
        )


def say(text: str) -> None:
    """Progress on stderr with the elapsed time."""
    elapsed = time.monotonic() - _START
    sys.stderr.write(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {text}\n")
    sys.stderr.flush()


def median(values: Sequence[float]) -> float:
    """The median (0.0 for no values)."""
    return float(statistics.median(values)) if values else 0.0


def quantiles(values: Sequence[float]) -> tuple[float, float]:
    """The lowest and highest value, for showing the spread next to a median."""
    return (min(values), max(values)) if values else (0.0, 0.0)


def rounds(items: Sequence[T], count: int) -> list[list[T]]:
    """``count`` rounds over ``items``, the order reversed every other round (A B, B A ...).

    Interleaving spreads the machine's drifting load over every item alike; the
    reversal keeps one item from always running first.
    """
    out = []
    for index in range(count):
        order = list(items) if index % 2 == 0 else list(reversed(items))
        out.append(order)
    return out


@dataclass
class Measured:
    """A load run plus what the server spent on it."""

    load: LoadResult
    server_cpu_seconds: float
    #: the busiest process's share of the server's CPU time (1.0: one process did it all)
    busiest_share: float = 0.0
    #: CPU time the whole machine left idle during the run
    idle_cpu_seconds: float = 0.0

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU time (all its processes) per request served, in microseconds."""
        if not self.load.requests:
            return 0.0
        return self.server_cpu_seconds / self.load.requests * 1e6

    @property
    def idle_cores(self) -> float:
        """Cores the machine left idle on average: CPU the server could still have had."""
        return self.idle_cpu_seconds / self.load.seconds if self.load.seconds else 0.0

    @property
    def server_cores(self) -> float:
        """Average number of cores the server kept busy."""
        return self.server_cpu_seconds / self.load.seconds if self.load.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        data: dict[str, Any] = self.load.as_dict()
        data["server_cpu_seconds"] = self.server_cpu_seconds
        data["cpu_us_per_request"] = self.cpu_us_per_request
        data["server_cores"] = self.server_cores
        data["busiest_share"] = self.busiest_share
        data["idle_cores"] = self.idle_cores
        return data


def measure(server: Server, path: str, connections: int, seconds: float) -> Measured:
    """One bounded load run against ``server`` with its CPU use over the run."""
    before = server.sample()
    idle_before = idle_cpu_seconds()
    load = run_load(f"http://127.0.0.1:{server.port}{path}", connections, seconds)
    idle = idle_cpu_seconds() - idle_before
    after = server.sample()
    spent = [after.per_pid[pid] - before.per_pid.get(pid, 0.0) for pid in after.per_pid]
    own = sum(spent)
    busiest = max(spent) / own if own > 0 and len(spent) > 1 else 1.0
    return Measured(load, max(0.0, after.cpu_seconds - before.cpu_seconds), busiest, idle)
