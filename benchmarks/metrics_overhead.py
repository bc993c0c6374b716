"""What the ``metrics`` option costs per request: servekit with metrics on against off.

The two servers run side by side and take turns under the same load (A B, B A ...);
each round gives a paired ratio on / off of server CPU time per request (from /proc)
and of throughput. Run by hand: ``python -m benchmarks.metrics_overhead [ROUNDS]``;
the result is written to ``benchmarks/results/metrics_overhead.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, measure, median, quantiles, rounds, say
from benchmarks.procs import Server, free_port, start_all
from benchmarks.specs import servekit_spec

STRATEGIES = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("sync", "gthread", "gevent")
RESULTS = Path(__file__).parent / "results" / "metrics_overhead.json"


def _pair(settings: Settings, log_dir: Path, strategy: str, count: int) -> dict[str, Any]:
    off = servekit_spec(strategy, workers=2, key=f"{strategy}-off", label=f"{strategy} off")
    on = dataclasses.replace(
        off,
        key=f"{strategy}-on",
        label=f"{strategy} metrics on",
        argv=(*off.argv, "--metrics", f"127.0.0.1:{free_port()}"),
    )
    servers: list[Server] = []
    try:
        start_all([off, on], log_dir, servers)
        time.sleep(1.0)
        for server in servers:
            measure(server, "/", settings.overhead_connections, settings.warmup_seconds)
        runs: dict[str, list[dict[str, Any]]] = {s.spec.key: [] for s in servers}
        for order in rounds(servers, count):
            for server in order:
                result = measure(server, "/", settings.overhead_connections, settings.overhead_seconds)
                runs[server.spec.key].append(result.as_dict())
    finally:
        for server in servers:
            server.stop()
    a, b = on.key, off.key
    cpu = [
        x["cpu_us_per_request"] / y["cpu_us_per_request"]
        for x, y in zip(runs[a], runs[b], strict=True)
        if y["cpu_us_per_request"]
    ]
    rps = [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True) if y["rps"]]
    summary = {
        "strategy": strategy,
        "commands": {on.key: " ".join(on.argv), off.key: " ".join(off.argv)},
        "cpu_ratio": median(cpu),
        "cpu_ratio_range": quantiles(cpu),
        "rps_ratio": median(rps),
        "rps_ratio_range": quantiles(rps),
        "cpu_us_per_request": {
            "on": median([r["cpu_us_per_request"] for r in runs[a]]),
            "off": median([r["cpu_us_per_request"] for r in runs[b]]),
        },
        "rps": {"on": median([r["rps"] for r in runs[a]]), "off": median([r["rps"] for r in runs[b]])},
        "rounds": count,
    }
    say(
        f"metrics {strategy}: cpu/req on/off {summary['cpu_ratio']:.3f} "
        f"({summary['cpu_us_per_request']['on']:.0f} vs {summary['cpu_us_per_request']['off']:.0f} us), "
        f"rps on/off {summary['rps_ratio']:.3f}"
    )
    return summary


def main() -> None:
    """Measure every strategy and write the results."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        results = [_pair(settings, Path(tmp), s, count) for s in STRATEGIES]
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
