"""What the numbers were measured on: CPU, memory, kernel, versions, load, commit."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.load import generator_name
from benchmarks.procs import ROOT
from benchmarks.specs import BIN, usable_cpus

__all__ = ["machine_info"]

PACKAGES = (
    "servekit",
    "gunicorn",
    "werkzeug",
    "gevent",
    "greenlet",
    "eventlet",
    "tornado",
    "structlog",
    "pydantic",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _versions() -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        f"names = {list(PACKAGES)!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
        "import sys; out['python'] = sys.version.split()[0]\n"
        "print(json.dumps(out))"
    )
    out = subprocess.run(
        [str(BIN / "python"), "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    import json

    versions: dict[str, str] = json.loads(out.stdout)
    return versions


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30
    )
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    """A JSON-ready description of this machine and this checkout."""
    dirty = _git("status", "--porcelain", "--", "servekit")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu_model": _cpu_model(),
        "cpus_online": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "versions": _versions(),
        "load_generator": generator_name(),
        "load_average_start": os.getloadavg(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "servekit_dirty": bool(dirty),
    }
