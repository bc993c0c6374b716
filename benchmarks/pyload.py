"""A bounded HTTP/1.1 load generator, used when ``wrk`` is not installed.

``python -m benchmarks.pyload URL --connections N --duration S --timeout T`` keeps
``N`` keep-alive connections busy for ``S`` seconds and prints one JSON line in the
same shape as ``report.lua``. It is one Python process on one core: on a fast
endpoint it saturates long before a multi-process server does, so its numbers are
a floor there (its CPU use is reported with every run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["main"]


@dataclass
class _Stats:
    latencies: list[float] = field(default_factory=list)
    connect_errors: int = 0
    read_errors: int = 0
    status_errors: int = 0
    timeouts: int = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    keep = lines[0].startswith("HTTP/1.1")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection":
            keep = value.strip().lower() != "close"
    if length:
        await reader.readexactly(length)
    return status, keep


async def _client(
    host: str, port: int, request: bytes, deadline: float, timeout: float, stats: _Stats
) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while time.monotonic() < deadline:
        remaining = deadline - time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), min(timeout, remaining)
                )
            assert reader is not None and writer is not None
            started = time.perf_counter()
            writer.write(request)
            status, keep = await asyncio.wait_for(_read_response(reader), timeout)
            stats.latencies.append(time.perf_counter() - started)
            if not 200 <= status < 400:
                stats.status_errors += 1
            if not keep:
                writer.close()
                writer = None
        except TimeoutError:
            if time.monotonic() < deadline:
                stats.timeouts += 1
            if writer is not None:
                writer.close()
            writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            if writer is None:
                stats.connect_errors += 1
                await asyncio.sleep(0.01)
            else:
                stats.read_errors += 1
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def _run(url: str, connections: int, duration: float, timeout: float) -> dict[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    stats = _Stats()
    started = time.perf_counter()
    deadline = time.monotonic() + duration
    tasks = [
        asyncio.create_task(_client(host, port, request, deadline, timeout, stats))
        for _ in range(connections)
    ]
    # Requests still in flight at the deadline are abandoned, as wrk does.
    await asyncio.wait(tasks, timeout=duration + 0.05)
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    done = sorted(stats.latencies)
    return {
        "requests": len(done),
        "duration_us": int(elapsed * 1e6),
        "connect_errors": stats.connect_errors,
        "read_errors": stats.read_errors,
        "write_errors": 0,
        "status_errors": stats.status_errors,
        "timeouts": stats.timeouts,
        "p50_us": int(_percentile(done, 50) * 1e6),
        "p90_us": int(_percentile(done, 90) * 1e6),
        "p99_us": int(_percentile(done, 99) * 1e6),
        "max_us": int((done[-1] if done else 0.0) * 1e6),
    }


def main() -> None:
    """Parse the command line, run the load, print the JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pyload")
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    duration = min(args.duration, 600.0)
    print(json.dumps(asyncio.run(_run(args.url, args.connections, duration, args.timeout))))


if __name__ == "__main__":
    main()
