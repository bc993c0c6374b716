"""Section 7: the granian strategy, against bare granian and servekit's gunicorn strategies.

* **Launcher overhead**: ``servekit run --strategy granian`` against the bare
  ``granian --interface wsgi`` CLI with the settings servekit gives granian (2 workers,
  4 blocking threads, ``backpressure`` 4, HTTP/1 only, keep-alive off, no access log), on
  ``/hello`` with 8 connections, interleaved rounds; paired ratios of CPU per request
  and of requests/s. Bare granian binds its own SO_REUSEPORT socket per worker.
* **Against gunicorn**: servekit-granian, servekit-gthread (2 x 4 threads) and
  servekit-gevent (2 x 1000 connections) on ``/hello``, ``/json`` (10 KB encoded per
  request), ``/cpu`` and ``/sleep?ms=50`` at 64 and 256 connections.

Latency percentiles come from wrk's recorded samples only (:mod:`benchmarks.wrkraw`).
Run by hand: ``python -m benchmarks.granian [OVERHEAD_ROUNDS [COMPARE_ROUNDS [SECONDS]]]
[--only overhead|compare]`` (results in ``benchmarks/results/granian.json``), or as the
``granian`` section of ``python -m benchmarks.run``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, median, quantiles, rounds, say
from benchmarks.procs import Server, ServerSpec, idle_cpu_seconds, start_all, stop_all
from benchmarks.specs import APP, BIN, servekit_spec
from benchmarks.wrkraw import run_raw

__all__ = ["bare_granian_spec", "render", "run_granian"]

RESULTS = Path(__file__).parent / "results" / "granian.json"
WORKERS = 2
THREADS = 4
ENDPOINTS = ("/hello", "/json", "/cpu", "/sleep?ms=50")
LEVELS = (64, 256)


def bare_granian_spec() -> ServerSpec:
    """The granian CLI with what servekit's granian strategy sets (``granian_options``)."""
    argv = [str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", "{port}"]
    argv += ["--workers", str(WORKERS), "--blocking-threads", str(THREADS)]
    argv += ["--backpressure", str(THREADS), "--runtime-threads", "1", "--http", "1", "--no-ws"]
    argv += ["--no-http1-keep-alive", "--http1-header-read-timeout", "10000"]
    argv += ["--blocking-threads-idle-timeout", "600", "--backlog", "2048"]
    argv += ["--respawn-failed-workers", "--workers-kill-timeout", "30", "--no-access-log", APP]
    return ServerSpec("granian-bare", "granian CLI (bare)", tuple(argv), WORKERS * THREADS, WORKERS)


def _servekit(strategy: str) -> ServerSpec:
    return servekit_spec(strategy, workers=WORKERS, threads=THREADS, connections=1000)


def measure(server: Server, path: str, connections: int, seconds: float) -> dict[str, Any]:
    """One run: what wrk measured plus the server's CPU time per request."""
    before, idle_before = server.sample(), idle_cpu_seconds()
    load = run_raw(f"http://127.0.0.1:{server.port}{path}", connections, seconds)
    idle, after = idle_cpu_seconds() - idle_before, server.sample()
    cpu = max(0.0, after.cpu_seconds - before.cpu_seconds)
    data: dict[str, Any] = load.as_dict()
    data["cpu_us_per_request"] = cpu / load.requests * 1e6 if load.requests else 0.0
    data["idle_cores"] = idle / load.seconds if load.seconds else 0.0
    return data


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_ms", "p99_ms", "wrk_p99_ms", "cpu_us_per_request", "littles_law")
    out: dict[str, Any] = {key: median([r[key] for r in runs]) for key in keys}
    out["errors"] = sum(r["errors"] + r["timeouts"] for r in runs)
    out["synthetic"] = sum(r["synthetic"] for r in runs)
    out["samples"] = sum(r["samples"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["client_cpu"] = median([r["client_cpu"] for r in runs])
    return out


def _glue_spec() -> ServerSpec:
    ours = _servekit("granian")
    argv = (str(BIN / "python"), "-m", "benchmarks.granian_glue", *ours.argv[1:])
    return ServerSpec("servekit-granian-glue", "servekit, granian's glue", argv, 8, WORKERS)


def _ratios(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> list[float]:
    return [x[key] / y[key] for x, y in zip(a, b, strict=True) if y[key]]


def _overhead(log_dir: Path, count: int, seconds: float) -> dict[str, Any]:
    specs = [_servekit("granian"), bare_granian_spec(), _glue_spec()]
    servers: list[Server] = []
    try:
        start_all(specs, log_dir, servers)
        time.sleep(1.0)
        for server in servers:
            measure(server, "/hello", 8, 1.0)  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {s.spec.key: [] for s in servers}
        for order in rounds(servers, count):
            for server in order:
                runs[server.spec.key].append(measure(server, "/hello", 8, seconds))
    finally:
        stop_all(servers)
    ours, bare, glue = (runs[spec.key] for spec in specs)
    cpu = _ratios(ours, bare, "cpu_us_per_request")
    rps = _ratios(ours, bare, "rps")
    split = {
        "infrastructure": median(_ratios(glue, bare, "cpu_us_per_request")),
        "wsgi_layer": median(_ratios(ours, glue, "cpu_us_per_request")),
    }
    result = {
        "commands": {s.key: s.shell() for s in specs},
        "rounds": count,
        "seconds": seconds,
        "servekit": _summary(ours),
        "bare": _summary(bare),
        "glue": _summary(glue),
        "cpu_split": split,
        "cpu_ratio": median(cpu),
        "cpu_ratio_range": quantiles(cpu),
        "rps_ratio": median(rps),
        "rps_ratio_range": quantiles(rps),
    }
    say(
        f"granian overhead: cpu/req {result['cpu_ratio']:.3f} (socket/drain/signals "
        f"{split['infrastructure']:.3f}, WSGI layer {split['wsgi_layer']:.3f}), "
        f"rps {result['rps_ratio']:.3f}"
    )
    return result


def _compare(log_dir: Path, count: int, seconds: float) -> dict[str, Any]:
    specs = [_servekit("granian"), _servekit("gthread"), _servekit("gevent")]
    servers: list[Server] = []
    table: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        start_all(specs, log_dir, servers)
        for path in ENDPOINTS:
            for connections in LEVELS:
                runs: dict[str, list[dict[str, Any]]] = {s.spec.key: [] for s in servers}
                for order in rounds(servers, count):
                    for server in order:
                        runs[server.spec.key].append(measure(server, path, connections, seconds))
                        server.wait_idle()
                cell = f"{path} c={connections}"
                table[cell] = {key: _summary(r) for key, r in runs.items()}
                say(
                    f"granian compare {cell}: "
                    + ", ".join(f"{k} {v['rps']:.0f} rps" for k, v in table[cell].items())
                )
    finally:
        stop_all(servers)
    return {
        "commands": {s.key: s.shell() for s in specs},
        "rounds": count,
        "seconds": seconds,
        "cells": table,
    }


def run_granian(settings: Settings, log_dir: Path) -> dict[str, Any]:
    """Both parts, sized from ``settings`` (its overhead and CPU rounds)."""
    seconds = max(1.0, settings.overhead_seconds)
    return {
        "overhead": _overhead(log_dir, max(2, settings.overhead_rounds // 2), seconds),
        "compare": _compare(log_dir, max(1, settings.cpu_rounds // 2), seconds),
    }


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _split(overhead: dict[str, Any]) -> str:
    split = overhead.get("cpu_split")
    if not split:
        return ""
    return (
        f" Of that CPU, servekit's socket, drain and signals take {split['infrastructure']:.3f}x "
        "(servekit with granian's own WSGI glue / bare granian) and servekit's WSGI layer "
        f"{split['wsgi_layer']:.3f}x (servekit / servekit with granian's glue), paired per round."
    )


def render(section: dict[str, Any]) -> str:
    """The section as markdown (for BENCHMARKS.md)."""
    o = section["overhead"]
    lines = [
        f"Launcher overhead, `/hello`, 8 connections, {o['rounds']} interleaved rounds of "
        f"{o['seconds']:g} s: servekit-granian / bare granian **CPU per request "
        f"{o['cpu_ratio']:.3f}x** (range {o['cpu_ratio_range'][0]:.3f}-{o['cpu_ratio_range'][1]:.3f}), "
        f"**requests/s {o['rps_ratio']:.3f}x** (range {o['rps_ratio_range'][0]:.3f}-"
        f"{o['rps_ratio_range'][1]:.3f}).{_split(o)}",
        "",
        "| server | req/s | p50 ms | p99 ms | wrk's p99 ms | CPU us/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [("servekit", "servekit granian"), ("bare", "granian CLI")]
    if "glue" in o:
        rows.append(("glue", "servekit granian, granian's own WSGI glue"))
    for side, name in rows:
        s = o[side]
        lines.append(
            f"| {name} | {s['rps']:.0f} | {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | "
            f"{_ms(s['wrk_p99_ms'])} | {s['cpu_us_per_request']:.0f} |"
        )
    c = section["compare"]
    keys = list(next(iter(c["cells"].values())))
    lines += [
        "",
        f"Against servekit's gunicorn strategies ({c['rounds']} rounds of {c['seconds']:g} s):",
        "",
    ]
    lines.append("| endpoint | " + " | ".join(keys) + " | granian / best gunicorn |")
    lines.append("| --- |" + " ---: |" * (len(keys) + 1))
    for cell, row in c["cells"].items():
        best = max((v["rps"] for k, v in row.items() if k != keys[0]), default=0.0)
        cells = [
            f"{v['rps']:.0f} req/s, p50 {_ms(v['p50_ms'])} / p99 {_ms(v['p99_ms'])} ms, "
            f"{v['cpu_us_per_request']:.0f} us CPU"
            + (f", {v['errors']} errors" if v["errors"] else "")
            for v in row.values()
        ]
        ratio = row[keys[0]]["rps"] / best if best else 0.0
        lines.append(f"| `{cell}` | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the parts by hand, update ``benchmarks/results/granian.json``, print the section."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.granian")
    parser.add_argument("overhead_rounds", nargs="?", type=int, default=9)
    parser.add_argument("compare_rounds", nargs="?", type=int, default=3)
    parser.add_argument("seconds", nargs="?", type=float, default=2.0)
    parser.add_argument("--only", choices=("overhead", "compare"), help="run one part only")
    args = parser.parse_args(argv)
    result: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "overhead"):
            result["overhead"] = _overhead(Path(tmp), args.overhead_rounds, args.seconds)
            result["overhead"]["load_average"] = os.getloadavg()
        if args.only in (None, "compare"):
            result["compare"] = _compare(Path(tmp), args.compare_rounds, args.seconds)
            result["compare"]["load_average"] = os.getloadavg()
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))


if __name__ == "__main__":
    main()
