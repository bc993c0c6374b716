"""Sections 1 and 5: servekit against the bare gunicorn CLI, same app, same settings.

For sync, gthread and gevent, with the access log off in both and then on in both,
the two servers run side by side and take turns under the same load (A B, B A ...).
Each round gives a paired ratio servekit / gunicorn; the table shows their median.
With the log off, the memory of master and workers is read after boot and after load.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, measure, median, quantiles, rounds, say
from benchmarks.procs import Server, start_all
from benchmarks.specs import gunicorn_spec, servekit_spec

__all__ = ["STRATEGIES", "run_overhead"]

STRATEGIES = ("sync", "gthread", "gevent")


def _memory(server: Server) -> dict[str, Any]:
    rows = server.memory()
    return {
        "processes": len(rows),
        "master_rss": rows[0][1] if rows else 0,
        "worker_rss": [rss for _, rss, _ in rows[1:]],
        "rss": sum(rss for _, rss, _ in rows),
        "pss": sum(pss for _, _, pss in rows),
    }


def _pair(settings: Settings, log_dir: Path, strategy: str, access_log: bool) -> dict[str, Any]:
    workers = settings.overhead_workers
    specs = [
        servekit_spec(strategy, workers=workers, access_log=access_log),
        gunicorn_spec(strategy, workers=workers, access_log=access_log),
    ]
    servers: list[Server] = []
    try:
        start_all(specs, log_dir, servers)
        time.sleep(1.0)  # let every worker finish booting before reading memory
        booted = {s.spec.key: _memory(s) for s in servers}
        for server in servers:
            measure(server, "/", settings.overhead_connections, settings.warmup_seconds)
        runs: dict[str, list[dict[str, Any]]] = {s.spec.key: [] for s in servers}
        for order in rounds(servers, settings.overhead_rounds):
            for server in order:
                result = measure(
                    server, "/", settings.overhead_connections, settings.overhead_seconds
                )
                runs[server.spec.key].append(result.as_dict())
        loaded = {s.spec.key: _memory(s) for s in servers}
    finally:
        for server in servers:
            server.stop()
    a, b = (spec.key for spec in specs)
    ratios = [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True) if y["rps"]]
    p99_ratios = [
        x["p99_ms"] / y["p99_ms"] for x, y in zip(runs[a], runs[b], strict=True) if y["p99_ms"]
    ]
    cpu_ratios = [
        x["cpu_us_per_request"] / y["cpu_us_per_request"]
        for x, y in zip(runs[a], runs[b], strict=True)
        if y["cpu_us_per_request"]
    ]
    summary: dict[str, Any] = {
        "strategy": strategy,
        "access_log": access_log,
        "commands": {spec.key: spec.shell() for spec in specs},
        "runs": runs,
        "memory_booted": booted,
        "memory_loaded": loaded,
        "rps_ratio": median(ratios),
        "rps_ratio_range": quantiles(ratios),
        "p99_ratio": median(p99_ratios),
        "cpu_ratio": median(cpu_ratios),
    }
    for key, side in ((a, "servekit"), (b, "gunicorn")):
        summary[side] = {
            "rps": median([r["rps"] for r in runs[key]]),
            "p50_ms": median([r["p50_ms"] for r in runs[key]]),
            "p99_ms": median([r["p99_ms"] for r in runs[key]]),
            "cpu_us_per_request": median([r["cpu_us_per_request"] for r in runs[key]]),
            "errors": sum(r["errors"] for r in runs[key]),
            "client_cpu": median([r["client_cpu"] for r in runs[key]]),
        }
    say(
        f"overhead {strategy} log={'on' if access_log else 'off'}: "
        f"servekit {summary['servekit']['rps']:.0f} rps, gunicorn {summary['gunicorn']['rps']:.0f} rps, "
        f"ratio {summary['rps_ratio']:.3f}, cpu/req ratio {summary['cpu_ratio']:.3f}"
    )
    return summary


def run_overhead(settings: Settings, log_dir: Path) -> list[dict[str, Any]]:
    """Every strategy with the access log off, then on; one summary per pair."""
    return [
        _pair(settings, log_dir, strategy, access_log)
        for access_log in (False, True)
        for strategy in STRATEGIES
    ]
