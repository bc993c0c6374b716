"""Section 4: a CPU-bound endpoint (a few ms of pure Python) across strategies.

Python runs one thread of a process at a time (the GIL), so only processes add
CPU throughput. The ideal for each server is ``min(processes, CPUs) / t``, where
``t`` is the endpoint's CPU time measured in this process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.app import CPU_LOOPS, burn
from benchmarks.common import Settings, measure, median, rounds, say
from benchmarks.procs import Server, start_all, stop_all
from benchmarks.specs import cpu_specs, usable_cpus

__all__ = ["cpu_request_seconds", "run_cpu"]


def cpu_request_seconds(loops: int = CPU_LOOPS, repeat: int = 30) -> float:
    """Median seconds that one ``/cpu`` request's work takes here, alone."""
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        burn(loops)
        samples.append(time.process_time() - started)
    return median(samples)


def run_cpu(settings: Settings, log_dir: Path) -> dict[str, Any]:
    """Every strategy under ``cpu_connections`` clients of the ``/cpu`` endpoint."""
    cpus = usable_cpus()
    specs = cpu_specs(cpus)
    work = cpu_request_seconds()
    servers: list[Server] = []
    path = f"/cpu?loops={CPU_LOOPS}"
    runs: dict[str, list[dict[str, Any]]] = {spec.key: [] for spec in specs}
    try:
        start_all(specs, log_dir, servers)
        for server in servers:
            measure(server, path, settings.cpu_connections, settings.warmup_seconds)
        for order in rounds(servers, settings.cpu_rounds):
            for server in order:
                server.wait_idle()
                result = measure(server, path, settings.cpu_connections, settings.cpu_seconds)
                runs[server.spec.key].append(result.as_dict())
    finally:
        stop_all(servers)
    rows = []
    for spec in specs:
        samples = runs[spec.key]
        ideal = min(spec.processes, cpus) / work
        row: dict[str, Any] = {
            "key": spec.key,
            "label": spec.label,
            "processes": spec.processes,
            "capacity": spec.capacity,
            "rps": median([r["rps"] for r in samples]),
            "p50_ms": median([r["p50_ms"] for r in samples]),
            "p99_ms": median([r["p99_ms"] for r in samples]),
            "server_cores": median([r["server_cores"] for r in samples]),
            "client_cpu": median([r["client_cpu"] for r in samples]),
            "idle_cores": median([r["idle_cores"] for r in samples]),
            "cpu_us_per_request": median([r["cpu_us_per_request"] for r in samples]),
            "ideal_rps": ideal,
            "samples": samples,
        }
        row["of_ideal"] = row["rps"] / ideal if ideal else 0.0
        rows.append(row)
        say(
            f"cpu {spec.label:20s} {row['rps']:6.0f} rps p99 {row['p99_ms']:7.1f} ms "
            f"cores {row['server_cores']:.2f}"
        )
    return {
        "cpus": cpus,
        "work_ms": work * 1000,
        "loops": CPU_LOOPS,
        "connections": settings.cpu_connections,
        "commands": {spec.key: spec.shell() for spec in specs},
        "rows": rows,
    }
