"""Section 3: an I/O-bound endpoint (sleep 50 ms) at rising concurrency, every strategy.

The ceiling of a server at ``c`` connections is
``min(min(c, capacity) / 0.05 s, CPU-bound limit)``. The CPU-bound limit is measured:
the same server, the same number of connections, the same endpoint with a 0 ms sleep.
For a server whose capacity is at most 32, requests beyond its capacity wait in the
listen queue and cost it nothing, so its limit is measured once, at 32 connections;
servers with a larger capacity are measured again at every level above 32.

A server with a capacity below the number of connections still holds the requests
it did not answer when a run ends; before each run the harness waits until a fresh
request is answered, so no run inherits the previous one's queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import Measured, Settings, measure, median, rounds, say
from benchmarks.procs import Server, start_all, stop_all
from benchmarks.specs import ceiling_specs, usable_cpus

__all__ = ["PROBE_LEVEL", "run_ceiling"]

PROBE_LEVEL = 32


def _runs(
    servers: list[Server], path: str, level: int, settings: Settings
) -> dict[str, list[Measured]]:
    out: dict[str, list[Measured]] = {s.spec.key: [] for s in servers}
    for order in rounds(servers, settings.ceiling_rounds):
        for server in order:
            server.wait_idle()
            out[server.spec.key].append(measure(server, path, level, settings.ceiling_seconds))
    return out


def _summary(runs: list[Measured]) -> dict[str, Any]:
    return {
        "rps": median([m.load.rps for m in runs]),
        "p50_ms": median([m.load.p50_ms for m in runs]),
        "p99_ms": median([m.load.p99_ms for m in runs]),
        "timeouts": sum(m.load.timeouts for m in runs),
        "errors": sum(m.load.errors for m in runs),
        "client_cpu": median([m.load.client_cpu for m in runs]),
        "server_cores": median([m.server_cores for m in runs]),
        "busiest_share": median([m.busiest_share for m in runs]),
        "idle_cores": median([m.idle_cores for m in runs]),
        "cpu_us_per_request": median([m.cpu_us_per_request for m in runs]),
        "samples": [m.as_dict() for m in runs],
    }


def run_ceiling(settings: Settings, log_dir: Path) -> dict[str, Any]:
    """Throughput against the ceiling for every server and concurrency level."""
    cpus = usable_cpus()
    specs = ceiling_specs(cpus)
    servers: list[Server] = []
    io_path = f"/io?ms={settings.io_ms}"
    try:
        start_all(specs, log_dir, servers)
        for server in servers:
            measure(server, io_path, 8, settings.warmup_seconds)
        probes: dict[str, dict[int, dict[str, Any]]] = {s.spec.key: {} for s in servers}
        say(f"ceiling: CPU-bound limit at {PROBE_LEVEL} connections (0 ms sleep)")
        for key, runs in _runs(servers, "/io?ms=0", PROBE_LEVEL, settings).items():
            probes[key][PROBE_LEVEL] = _summary(runs)
        wide = [s for s in servers if s.spec.capacity is None or s.spec.capacity > PROBE_LEVEL]
        results: dict[str, dict[int, dict[str, Any]]] = {s.spec.key: {} for s in servers}
        for level in settings.ceiling_levels:
            say(f"ceiling: {level} connections, {settings.io_ms} ms sleep")
            for key, runs in _runs(servers, io_path, level, settings).items():
                results[key][level] = _summary(runs)
            if level > PROBE_LEVEL:
                for key, runs in _runs(wide, "/io?ms=0", level, settings).items():
                    probes[key][level] = _summary(runs)
    finally:
        stop_all(servers)
    rows = []
    for spec in specs:
        for level in settings.ceiling_levels:
            cell = results[spec.key][level]
            probe = probes[spec.key].get(level) or probes[spec.key][PROBE_LEVEL]
            slots = level if spec.capacity is None else min(level, spec.capacity)
            capacity_bound = slots / (settings.io_ms / 1000)
            ceiling = min(capacity_bound, probe["rps"])
            # The CPU this server could get: what it used plus what the machine left idle
            # (wrk and other tenants took the rest), at most one core per process.
            available = min(float(spec.processes), cpus, cell["server_cores"] + cell["idle_cores"])
            rows.append(
                {
                    "key": spec.key,
                    "label": spec.label,
                    "connections": level,
                    "capacity": spec.capacity,
                    "capacity_bound_rps": capacity_bound,
                    "cpu_limit_rps": probe["rps"],
                    "cpu_limit_measured_at": level if level in probes[spec.key] else PROBE_LEVEL,
                    "ceiling_rps": ceiling,
                    "bound_by": "capacity" if capacity_bound <= probe["rps"] else "cpu",
                    "efficiency": cell["rps"] / ceiling if ceiling else 0.0,
                    "cpu_available": available,
                    "cpu_saturation": cell["server_cores"] / available if available else 0.0,
                    **{k: v for k, v in cell.items() if k != "samples"},
                }
            )
            say(
                f"  {spec.label:34s} c={level:<4d} {cell['rps']:8.0f} rps of {ceiling:8.0f} "
                f"({rows[-1]['efficiency']:.0%}), wrk cpu {cell['client_cpu']:.2f}"
            )
    return {
        "cpus": cpus,
        "io_ms": settings.io_ms,
        "commands": {spec.key: spec.shell() for spec in specs},
        "labels": {spec.key: spec.label for spec in specs},
        "capacities": {spec.key: spec.capacity for spec in specs},
        "processes": {spec.key: spec.processes for spec in specs},
        "rows": rows,
        "raw": {key: {str(k): v for k, v in levels.items()} for key, levels in results.items()},
        "probes": {key: {str(k): v for k, v in levels.items()} for key, levels in probes.items()},
    }
