"""Load from a separate process: ``wrk`` when installed, else :mod:`benchmarks.pyload`.

Every run is bounded in time (``-d``) and the process is killed if it overruns.
The load generator's own CPU time is recorded, so a run where it, not the server,
was the bottleneck can be told apart.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["LoadResult", "generator_name", "run_load", "wrk_command"]

HERE = Path(__file__).resolve().parent
WRK = shutil.which("wrk")


@dataclass
class LoadResult:
    """One bounded load run: throughput, latency and errors as the client saw them."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    timeouts: int
    client_cpu: float  # load generator CPU seconds per wall second (1.0 = one core)

    def as_dict(self) -> dict[str, float | int]:
        """A JSON-ready copy."""
        return asdict(self)


def generator_name() -> str:
    """Which load generator runs: ``wrk <version>`` or the Python fallback."""
    if WRK is None:
        return "benchmarks.pyload (Python asyncio; wrk not installed)"
    out = subprocess.run([WRK, "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "wrk"
    return first.split("Copyright")[0].strip()


def wrk_command(url: str, connections: int, seconds: float, timeout: float) -> list[str]:
    """The exact ``wrk`` (or fallback) command line for one run."""
    if WRK is None:
        return [
            sys.executable,
            "-m",
            "benchmarks.pyload",
            url,
            "--connections",
            str(connections),
            "--duration",
            str(seconds),
            "--timeout",
            str(timeout),
        ]
    return [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{max(1, round(timeout))}s",
        "-s",
        str(HERE / "report.lua"),
        url,
    ]


def run_load(url: str, connections: int, seconds: float, timeout: float = 5.0) -> LoadResult:
    """Run one bounded load against ``url`` and return what the client measured.

    Raises:
        RuntimeError: the load generator failed or printed no summary.
    """
    cmd = wrk_command(url, connections, seconds, timeout)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + timeout + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        msg = f"load generator overran its bound: {' '.join(cmd)}"
        raise RuntimeError(msg) from exc
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        msg = f"no summary from {' '.join(cmd)}:\n{out.stdout}\n{out.stderr}"
        raise RuntimeError(msg)
    data = json.loads(line)
    secs = data["duration_us"] / 1e6
    errors = sum(
        data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors")
    )
    return LoadResult(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        timeouts=data["timeouts"],
        client_cpu=cpu / wall if wall else 0.0,
    )
