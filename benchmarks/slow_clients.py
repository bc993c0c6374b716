"""Bare gunicorn under the slow-client attack of tests/test_reliability_slow_clients.py.

The reference for RELIABILITY.md's slow-client tables: gunicorn's own worker classes,
the same test app, sizes and ``--timeout 4`` (bare gunicorn has no head deadline, and
gunicorn 27 has no eventlet worker), the same attackers (N slow heads, slow bodies, slow readers and idle
connections, each reconnecting when cut) and the same good client every 0.5 s.

    .venv/bin/python -m benchmarks.slow_clients            # N = capacity (4 for gevent, eventlet)
    .venv/bin/python -m benchmarks.slow_clients --n 200    # N = 200 of each kind

One server at a time; each row is printed as JSON and appended to
``benchmarks/results/slow_clients.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT, Server, ServerSpec
from tests.test_reliability_slow_clients import COOPERATIVE_N, attack_server

BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "slow_clients.jsonl"
#: per worker class: workers, its other flags, and N (the capacity; 4 for the cooperative ones)
CONFIGS: dict[str, tuple[int, list[str], int]] = {
    "sync": (2, [], 2),
    "gthread": (2, ["--threads", "2"], 4),
    "gevent": (1, ["--worker-connections", "1000"], COOPERATIVE_N),
    "tornado": (2, ["--threads", "2"], 4),
}


class _Bare:
    """What ``attack_server`` needs of a server: its url, pid and log."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.port}/"
        self.pid = server.process.pid

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")


def run(worker_class: str, n: int | None, log_dir: Path) -> dict[str, Any]:
    workers, extra, default_n = CONFIGS[worker_class]
    argv = [str(BIN / "gunicorn"), "tests.apps.slow:app", "-k", worker_class]
    argv += ["-w", str(workers), *extra, "-b", "127.0.0.1:{port}", "--no-control-socket"]
    argv += ["--timeout", "4", "--graceful-timeout", "5"]
    spec = ServerSpec(f"bare-{worker_class}", f"gunicorn -k {worker_class}", tuple(argv), None, 1)
    server = Server.start(spec, log_dir)
    try:
        server.wait_ready()
        row = attack_server(_Bare(server), worker_class, n or default_n, ("head", "body", "reader", "idle"))
    finally:
        server.stop()
    row.pop("log", None)
    row["server"] = f"bare gunicorn {worker_class}"
    row["command"] = spec.shell()
    row["when"] = time.strftime("%Y-%m-%d")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="attackers of each kind")
    parser.add_argument("classes", nargs="*", default=list(CONFIGS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for worker_class in args.classes:
            row = run(worker_class, args.n, Path(tmp))
            print(json.dumps(row, default=repr), flush=True)
            with RESULTS.open("a") as out:
                out.write(json.dumps(row, default=repr) + "\n")


if __name__ == "__main__":
    main()
