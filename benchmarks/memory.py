"""Section 5's cause: how much each import adds to one process's RSS, and whether
servekit's extra memory grows with the number of workers.

A gunicorn worker is a fork of its master, so whatever the master imported is in
every worker's RSS too. Each step of :data:`STEPS` is a fresh interpreter that
imports one more layer and reports its RSS. :func:`worker_sweep` starts servekit and
bare gunicorn with 1, 2 and 4 workers and reads RSS and PSS of all their processes:
RSS counts a page shared by the forked processes once per process, PSS splits it
between them, so the sum of PSS is the memory the server really takes.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import median
from benchmarks.procs import ROOT, Server, http_get
from benchmarks.specs import APP, BIN, gunicorn_spec, servekit_spec

__all__ = ["STEPS", "SWEEP_WORKERS", "import_rss", "worker_sweep"]

SWEEP_WORKERS = (1, 2, 4)
#: seconds after the first 200 OK before memory is read (every worker has booted)
_SETTLE_SECONDS = 1.0
_WARM_REQUESTS = 50

_GUNICORN = "import gunicorn.app.wsgiapp, gunicorn.arbiter, gunicorn.workers.sync"
STEPS: tuple[tuple[str, str], ...] = (
    ("python (nothing imported)", "pass"),
    ("bare gunicorn master (gunicorn.app.wsgiapp, arbiter, sync worker)", _GUNICORN),
    ("+ structlog", f"{_GUNICORN}; import structlog"),
    (
        "+ servekit's gunicorn modules (gunicorn_app, gunicorn_log, logs: structlog)",
        f"{_GUNICORN}; import servekit.backends.gunicorn.app",
    ),
    ("+ pydantic", f"{_GUNICORN}; import servekit.backends.gunicorn.app, pydantic"),
    (
        "+ servekit.cli and a resolved plan (what `servekit run` holds)",
        f"{_GUNICORN}; import servekit.backends.gunicorn.app, servekit.cli, servekit.resolver; "
        f"servekit.resolver.resolve({APP!r}, 'sync', source='cli', workers=2)",
    ),
)

_REPORT = (
    "\nimport sys\n"
    "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0], len(sys.modules))"
)


def import_rss(repeat: int = 3) -> list[dict[str, Any]]:
    """RSS (KiB, median of ``repeat``) and module count after each step of :data:`STEPS`."""
    rows = []
    for label, code in STEPS:
        samples = []
        modules = 0
        for _ in range(repeat):
            out = subprocess.run(
                [str(BIN / "python"), "-c", code + _REPORT],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            rss, count = out.stdout.split()[-2:]
            samples.append(int(rss))
            modules = int(count)
        samples.sort()
        rows.append(
            {"step": label, "code": code, "rss_kib": samples[len(samples) // 2], "modules": modules}
        )
    return rows


def _booted_memory(spec: Any, log_dir: Path) -> tuple[int, int, int]:
    """``(processes, total RSS, total PSS)`` in bytes of ``spec`` once booted and warm."""
    server = Server.start(spec, log_dir)
    try:
        server.wait_ready()
        time.sleep(_SETTLE_SECONDS)
        for _ in range(_WARM_REQUESTS):
            http_get(server.port)
        rows = server.memory()
    finally:
        server.stop()
    return len(rows), sum(rss for _, rss, _ in rows), sum(pss for _, _, pss in rows)


def worker_sweep(log_dir: Path, strategy: str = "sync", repeat: int = 3) -> list[dict[str, Any]]:
    """servekit run against bare gunicorn at each of :data:`SWEEP_WORKERS` workers:
    total RSS and PSS (bytes, median of ``repeat`` interleaved starts)."""
    rows = []
    for workers in SWEEP_WORKERS:
        specs = {
            "servekit": servekit_spec(strategy, workers=workers),
            "gunicorn": gunicorn_spec(strategy, workers=workers),
        }
        samples: dict[str, list[tuple[int, int, int]]] = {name: [] for name in specs}
        for _ in range(repeat):
            for name, spec in specs.items():
                samples[name].append(_booted_memory(spec, log_dir))
        row: dict[str, Any] = {"strategy": strategy, "workers": workers}
        for name, got in samples.items():
            row[f"{name}_processes"] = got[0][0]
            row[f"{name}_rss"] = median([float(rss) for _, rss, _ in got])
            row[f"{name}_pss"] = median([float(pss) for _, _, pss in got])
        rows.append(row)
    return rows
