"""How many CPUs this process may really use.

``os.cpu_count()`` reports the machine's CPUs and ignores both the scheduler
affinity mask (``taskset``, cpusets) and a container's CPU quota (cgroup v2
``cpu.max``, cgroup v1 ``cpu.cfs_quota_us``). Sizing workers from it over-forks in
containers, so servekit takes the smallest of the three.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "usable_cpus"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota_v2(text: str) -> float | None:
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(quota_text: str | None, period_text: str | None) -> float | None:
    try:
        quota, period = float(quota_text or ""), float(period_text or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """The process's cgroup v2 directory and its ancestors, innermost first."""
    dirs: list[Path] = []
    text = _read(proc_cgroup) or ""
    for line in text.splitlines():
        if line.startswith("0::"):
            rel = line[3:].strip().lstrip("/")
            current = root / rel if rel else root
            while True:
                dirs.append(current)
                if current == root or root not in current.parents:
                    break
                current = current.parent
    if root not in dirs:
        dirs.append(root)
    return dirs


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs, or ``None`` if unlimited.

    Args:
        root: where the cgroup filesystem is mounted.
        proc_cgroup: the file naming the process's cgroup (``/proc/self/cgroup``).

    Returns:
        The tightest quota found along the cgroup v2 hierarchy (or in cgroup v1's
        ``cpu`` controller), as a possibly fractional number of CPUs.
    """
    limits: list[float] = []
    for directory in _own_cgroup_dirs(root, proc_cgroup):
        text = _read(directory / "cpu.max")
        if text is not None:
            quota = _quota_v2(text)
            if quota is not None:
                limits.append(quota)
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        quota = _quota_v1(_read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us"))
        if quota is not None:
            limits.append(quota)
    return min(limits) if limits else None


def usable_cpus(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> int:
    """CPUs this process may use: affinity and cgroup quota, at least 1.

    A fractional quota is rounded up (1.5 CPUs of quota keep 2 workers busy).

    Args:
        root: where the cgroup filesystem is mounted (for tests).
        proc_cgroup: the file naming the process's cgroup (for tests).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
