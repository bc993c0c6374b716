"""wrk runs whose latency percentiles come from recorded samples only.

wrk 4.1 corrects its latency histogram for coordinated omission before its Lua ``done()``
(and its own ``--latency`` table) see it: with ``e = duration / (requests / connections)``,
every recorded latency ``L >= 2e`` adds synthetic samples ``L - e``, ``L - 2e``, ... down to
just above ``e`` (``stats_correct`` in ``wrk.c``). A closed-loop benchmark has no omitted
requests to make up for, so those samples only inflate the mean and the high percentiles
(by 2-4x on keep-alive servers). The correction is deterministic, so this module reads
the whole histogram (``histogram.lua``) and undoes it from the top value down; every run
checks that exactly one sample per completed request is left, and reports Little's law
(mean latency x requests/s against the connections) as a second check.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.load import WRK

__all__ = ["RawLoad", "percentile", "run_raw", "uncorrect"]

HERE = Path(__file__).resolve().parent


@dataclass
class RawLoad:
    """One bounded wrk run, its percentiles from recorded samples only."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    #: wrk's own p99, synthetic samples included (for comparison)
    wrk_p99_ms: float
    #: samples left after undoing the correction (one per completed request) and removed
    samples: int
    synthetic: int
    #: mean latency x requests/s: at most the connections for a closed-loop client
    littles_law: float
    errors: int
    timeouts: int
    client_cpu: float

    def as_dict(self) -> dict[str, float | int]:
        """A JSON-ready copy."""
        return asdict(self)


def uncorrect(
    histogram: dict[int, int], requests: int, duration_us: int, connections: int
) -> dict[int, int]:
    """The histogram before wrk's ``stats_correct`` (latency in us -> count)."""
    per_connection = requests // connections
    if per_connection <= 0 or not histogram:
        return dict(histogram)
    expected = duration_us // per_connection
    top = max(histogram)
    recorded: dict[int, int] = {}
    for value in sorted(histogram, reverse=True):
        count = histogram[value]
        if value > expected:
            above = value + expected
            while above <= top:
                count -= recorded.get(above, 0)
                above += expected
        if count:
            recorded[value] = count
    return recorded


def percentile(histogram: dict[int, int], p: float) -> int:
    """wrk's percentile: the first value whose running count reaches the rank."""
    total = sum(histogram.values())
    rank = round((p / 100.0) * total + 0.5)
    running = 0
    for value in sorted(histogram):
        running += histogram[value]
        if running >= rank:
            return value
    return max(histogram) if histogram else 0


def run_raw(url: str, connections: int, seconds: float, timeout: float = 5.0) -> RawLoad:
    """One bounded wrk run against ``url``.

    Raises:
        RuntimeError: wrk is missing, failed, overran, or the histogram does not check out.
    """
    if WRK is None:
        msg = "the granian benchmarks need wrk (apt-get install -y wrk)"
        raise RuntimeError(msg)
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    cmd += ["--timeout", f"{max(1, round(timeout))}s", "-s", str(HERE / "histogram.lua"), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + timeout + 30, check=False
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        msg = f"no summary from {' '.join(cmd)}:\n{out.stdout}\n{out.stderr}"
        raise RuntimeError(msg)
    data = json.loads(line)
    corrected = {int(v): int(c) for v, c in data["histogram"]}
    recorded = uncorrect(corrected, data["requests"], data["duration_us"], connections)
    count = sum(recorded.values())
    if count > data["requests"] or any(c < 0 for c in recorded.values()):
        msg = f"wrk histogram does not check out: {count} samples for {data['requests']} requests"
        raise RuntimeError(msg)
    secs = data["duration_us"] / 1e6
    rps = data["requests"] / secs if secs else 0.0
    mean_us = sum(v * c for v, c in recorded.items()) / count if count else 0.0
    errors = sum(
        data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors")
    )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return RawLoad(
        requests=data["requests"],
        seconds=secs,
        rps=rps,
        p50_ms=percentile(recorded, 50) / 1000,
        p90_ms=percentile(recorded, 90) / 1000,
        p99_ms=percentile(recorded, 99) / 1000,
        mean_ms=mean_us / 1000,
        wrk_p99_ms=percentile(corrected, 99) / 1000,
        samples=count,
        synthetic=sum(corrected.values()) - count,
        littles_law=mean_us / 1e6 * rps,
        errors=errors,
        timeouts=data["timeouts"],
        client_cpu=cpu / wall if wall else 0.0,
    )
