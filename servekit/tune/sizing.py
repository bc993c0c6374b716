"""Sizes for each candidate, from the usable CPUs, the measured CPU share and a memory budget.

A CPU keeps ``1 / cpu_fraction`` requests busy at once (one computes while the others
wait), so:

- a process-per-request strategy (sync, processes) gets ``CPUs / cpu_fraction``
  workers, at least ``CPUs + 1``, at most ``4 x CPUs + 1``;
- a threaded one (gthread, tornado, granian) a worker per CPU with ``1 / cpu_fraction``
  threads each;
- a cooperative one (gevent, eventlet) a worker per CPU with connections for the
  concurrency tune drives.

Every count is capped by ``--max-concurrency`` (tune states only capacities it drove)
and by the memory budget (80% of it, at the RSS the probe measured per worker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from servekit.backends import load_strategy

__all__ = ["MEMORY_SHARE", "Sizing", "batches", "size", "trial_levels"]

#: the share of the memory budget that workers may fill (the rest: master, page cache)
MEMORY_SHARE = 0.8
_MIB = 1 << 20


@dataclass(frozen=True)
class Sizing:
    """What sizes are derived from."""

    cpus: int
    cpu_fraction: float
    max_concurrency: int
    memory_budget: int
    rss_per_worker: float | None

    @property
    def max_workers(self) -> int:
        """Workers that fit in the memory budget (one process's worth kept for the master)."""
        rss = self.rss_per_worker or 40 * _MIB
        return max(1, math.floor(MEMORY_SHARE * self.memory_budget / rss) - 1)

    @property
    def per_cpu(self) -> int:
        """Requests one CPU keeps busy at once."""
        return math.ceil(1 / min(1.0, max(self.cpu_fraction, 0.01)) - 1e-9)


def size(name: str, sizing: Sizing) -> dict[str, Any]:
    """The options to try ``name`` with (only those its config model has)."""
    fields = load_strategy(name).config.model_fields
    cap = min(sizing.max_workers, sizing.max_concurrency)
    one_per_cpu = max(1, min(sizing.cpus, cap))
    if "worker_connections" in fields:
        per_worker = math.ceil(sizing.max_concurrency / one_per_cpu)
        return {"workers": one_per_cpu, "worker_connections": per_worker}
    if "threads" in fields:
        threads = max(1, min(sizing.per_cpu, math.ceil(sizing.max_concurrency / one_per_cpu)))
        options: dict[str, Any] = {"threads": threads}
        if "workers" in fields:
            options = {"workers": one_per_cpu, **options}
        return options
    if "workers" in fields:
        fraction = min(1.0, max(sizing.cpu_fraction, 0.01))
        wanted = max(sizing.cpus + 1, math.ceil(sizing.cpus / fraction - 1e-9))
        return {"workers": max(1, min(wanted, 4 * sizing.cpus + 1, cap))}
    return {}


def trial_levels(knee: int, max_concurrency: int) -> list[int]:
    """Two loads to try every candidate at: the probe's knee and twice it (within the max)."""
    high = min(2 * knee, max_concurrency)
    low = knee if high > knee else max(1, max_concurrency // 2)
    return sorted({low, high})


def batches(
    options: list[dict[str, Any]], rss_per_worker: float | None, budget: int
) -> list[list[int]]:
    """Indexes of the candidates, grouped so that each group's servers fit in memory together."""
    rss = rss_per_worker or 40 * _MIB
    groups: list[list[int]] = []
    used = math.inf
    for i, opts in enumerate(options):
        need = (int(opts.get("workers", 1)) + 1) * rss
        if used + need > MEMORY_SHARE * budget or not groups:
            groups.append([i])
            used = need
        else:
            groups[-1].append(i)
            used += need
    return groups
