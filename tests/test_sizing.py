"""Worker sizing reads affinity and the cgroup quota, not os.cpu_count()."""

from __future__ import annotations

import os
from pathlib import Path

from servekit.sizing import cgroup_cpu_limit, usable_cpus


def fake_cgroup(
    tmp_path: Path, cpu_max: str | None, nested: str | None = None
) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir()
    proc = tmp_path / "proc_cgroup"
    if nested:
        inner = root / "kubepods" / "pod1"
        inner.mkdir(parents=True)
        (inner / "cpu.max").write_text(nested)
        proc.write_text("0::/kubepods/pod1\n")
    else:
        proc.write_text("0::/\n")
    if cpu_max is not None:
        (root / "cpu.max").write_text(cpu_max)
    return root, proc


def test_quota_limits_cpus(tmp_path: Path) -> None:
    """cpu.max '100000 100000' (one CPU) gives 1, whatever the machine has."""
    root, proc = fake_cgroup(tmp_path, "100000 100000\n")
    assert cgroup_cpu_limit(root, proc) == 1.0
    assert usable_cpus(root, proc) == 1


def test_fractional_quota_rounds_up(tmp_path: Path) -> None:
    """1.5 CPUs of quota keep 2 workers busy."""
    root, proc = fake_cgroup(tmp_path, "150000 100000")
    assert usable_cpus(root, proc) == min(2, len(os.sched_getaffinity(0)))


def test_unlimited_uses_affinity(tmp_path: Path) -> None:
    """'max' means no quota: the affinity mask decides."""
    root, proc = fake_cgroup(tmp_path, "max 100000")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpus(root, proc) == len(os.sched_getaffinity(0))


def test_nested_cgroup_quota(tmp_path: Path) -> None:
    """The process's own (nested) cgroup quota counts, the tightest along the path."""
    root, proc = fake_cgroup(tmp_path, "max 100000", nested="50000 100000")
    assert cgroup_cpu_limit(root, proc) == 0.5
    assert usable_cpus(root, proc) == 1


def test_missing_files(tmp_path: Path) -> None:
    """No cgroup files at all: affinity, at least 1."""
    assert usable_cpus(tmp_path / "none", tmp_path / "none2") == len(os.sched_getaffinity(0))


def test_cgroup_v1(tmp_path: Path) -> None:
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us is read too."""
    root = tmp_path / "cg"
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (root / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(root, tmp_path / "nope") == 2.0
