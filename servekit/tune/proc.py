"""What the kernel says about a server: CPU time of its process tree, RSS, machine load, memory.

CPU time is ``utime + stime`` (fields 14 and 15 of ``/proc/PID/stat``) plus
``cutime + cstime`` (16 and 17: children already reaped, so a worker that exits
between two samples still counts), in clock ticks, summed over the server's
process tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "MemoryBudget",
    "Sample",
    "children",
    "machine_busy_seconds",
    "memory_budget",
    "process_tree",
    "sample",
    "socket_count",
    "tree_cpu_seconds",
    "worker_rss",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")
_CGROUP = Path("/sys/fs/cgroup")
#: cgroup v1 writes a page-rounded 2**63 for "no limit"
_V1_UNLIMITED = 1 << 60


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/PID/stat`` (after the parenthesised command name)."""
    text = _read(_PROC / str(pid) / "stat")
    if text is None:
        return None
    return text[text.rfind(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from ``/proc/PID/task/*/children`` (or a scan of ppids)."""
    found: list[int] = []
    tasks = _PROC / str(pid) / "task"
    try:
        for task in tasks.iterdir():
            found += [int(c) for c in (_read(task / "children") or "").split()]
        if found or (tasks / str(pid) / "children").exists():
            return sorted(set(found))
    except OSError:
        return []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(pid):
                found.append(int(entry.name))
    return sorted(found)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue += children(current)
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid``'s process tree (reaped children included)."""
    ticks = 0
    for member in process_tree(pid):
        fields = _stat(member)
        if fields is not None:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / CLK_TCK


def socket_count(members: list[int]) -> int:
    """Sockets open in these processes (``/proc/PID/fd`` links to ``socket:[...]``).

    Less the count at rest, it is the connections a server has accepted: those still
    in the kernel's accept queue belong to no process yet.
    """
    count = 0
    for member in members:
        folder = f"/proc/{member}/fd"
        try:
            fds = os.listdir(folder)
        except OSError:
            continue
        for fd in fds:
            try:
                count += os.readlink(f"{folder}/{fd}").startswith("socket:")
            except OSError:
                continue
    return count


def _rss_bytes(pid: int) -> int | None:
    for line in (_read(_PROC / str(pid) / "status") or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def worker_rss(pid: int) -> float | None:
    """Mean resident memory of the server's workers (its direct children), or of ``pid``
    itself when it has none (werkzeug's threaded server), in bytes."""
    members = children(pid) or [pid]
    sizes = [size for size in map(_rss_bytes, members) if size is not None]
    return sum(sizes) / len(sizes) if sizes else None


def machine_busy_seconds() -> float:
    """CPU seconds the CPUs this process may run on have been busy (``/proc/stat``)."""
    try:
        allowed = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        allowed = set()
    ticks = 0
    for line in (_read(_PROC / "stat") or "").splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or (allowed and name not in allowed):
            continue
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, rest.split()[:8])
        # interrupt time is left out: loopback traffic (tune's own) is counted there
        ticks += user + nice + system + steal
    return ticks / CLK_TCK


@dataclass(frozen=True)
class Sample:
    """One reading before or after a measurement."""

    server_cpu: float
    own_cpu: float
    busy: float


def sample(pid: int) -> Sample:
    """The server tree's CPU, this process's own CPU and the machine's busy time, now."""
    own = os.times()
    return Sample(tree_cpu_seconds(pid), own.user + own.system, machine_busy_seconds())


@dataclass(frozen=True)
class MemoryBudget:
    """The memory the served app may use, and where that figure came from."""

    bytes: int
    source: str


def _own_cgroup(controller: str) -> str:
    """This process's cgroup path for a v1 ``controller`` (``""``: the v2 unified path)."""
    for line in (_read(_PROC / "self" / "cgroup") or "").splitlines():
        _, names, path = line.split(":", 2)
        if (controller in names.split(",")) if controller else not names:
            return path.strip().lstrip("/")
    return ""


def _cgroup_limit() -> tuple[int, str] | None:
    limits: list[tuple[int, str]] = []
    rel = Path(_own_cgroup(""))
    for directory in {_CGROUP / rel, *(_CGROUP / p for p in rel.parents)}:
        text = (_read(directory / "memory.max") or "").strip()
        if text.isdigit():
            limits.append((int(text), "cgroup memory.max"))
    v1 = _CGROUP / "memory"
    for directory in (v1 / _own_cgroup("memory"), v1):
        text = (_read(directory / "memory.limit_in_bytes") or "").strip()
        if text.isdigit() and int(text) < _V1_UNLIMITED:
            limits.append((int(text), "cgroup memory.limit_in_bytes"))
    return min(limits) if limits else None


def memory_budget() -> MemoryBudget:
    """The cgroup memory limit, or the machine's available memory when there is none."""
    limit = _cgroup_limit()
    if limit is not None:
        return MemoryBudget(*limit)
    for line in (_read(_PROC / "meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            return MemoryBudget(int(line.split()[1]) * 1024, "MemAvailable, no cgroup limit")
    return MemoryBudget(1 << 30, "assumed 1 GiB (no cgroup limit, no /proc/meminfo)")
