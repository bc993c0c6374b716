"""Section 5's cause: how much each import adds to one process's RSS.

A gunicorn worker is a fork of its master, so whatever the master imported is in
every worker's RSS too. Each step below is a fresh interpreter that imports one
more layer and reports its RSS.
"""

from __future__ import annotations

import subprocess
from typing import Any

from benchmarks.procs import ROOT
from benchmarks.specs import APP, BIN

__all__ = ["STEPS", "import_rss"]

_GUNICORN = "import gunicorn.app.wsgiapp, gunicorn.arbiter, gunicorn.workers.sync"
STEPS: tuple[tuple[str, str], ...] = (
    ("python (nothing imported)", "pass"),
    ("bare gunicorn master (gunicorn.app.wsgiapp, arbiter, sync worker)", _GUNICORN),
    ("+ structlog", f"{_GUNICORN}; import structlog"),
    (
        "+ servekit's gunicorn modules (gunicorn_app, gunicorn_log, logs: structlog)",
        f"{_GUNICORN}; import servekit.gunicorn_app",
    ),
    ("+ pydantic", f"{_GUNICORN}; import servekit.gunicorn_app, pydantic"),
    (
        "+ servekit.cli and a resolved plan (what `servekit run` holds)",
        f"{_GUNICORN}; import servekit.gunicorn_app, servekit.cli, servekit.plan; "
        f"servekit.plan.resolve({APP!r}, 'sync', source='cli', workers=2)",
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
