"""Soak: minutes at twice the capacity, per gunicorn strategy.

Twice the capacity means about half the clients wait in the listen backlog at any
time: that queueing is the designed back-pressure, and the only one. Every request
must complete (no reset, no refusal, no error status); the memory of every process
stays within a stated bound once warm; the master (which outlives every worker)
holds the same file descriptors at the end as at the start, also when workers are
replaced again and again. The full runs are heavy (``--heavy``); the default run
keeps a short one.
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import Any

import pytest

from tests.conftest import Load, children_of, open_fds, rss_kib

pytestmark = [pytest.mark.server, pytest.mark.reliability]

CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "sync": ({"workers": 2}, 2),
    "gthread": ({"workers": 2, "threads": 3}, 6),
    "gevent": ({"workers": 2, "worker_connections": 5}, 10),
    "eventlet": ({"workers": 2, "worker_connections": 5}, 10),
    "tornado": ({"workers": 2, "threads": 3}, 6),
}
GUNICORN = list(CONFIGS)
WARMUP_SECONDS = 10
#: the bound on memory growth between the end of the warm-up and the end of the run,
#: per process: 8 MiB or 15 % of its warm size, whichever is larger
RSS_GROWTH_KIB = 8 * 1024
RSS_GROWTH_RATIO = 0.15
PATHS = ["/sleep?s=0.02", "/big", "/", "/sleep?s=0.05"]


def _memory(master: int) -> dict[int, int]:
    """RSS of the master and its workers; a worker recycled meanwhile is left out."""
    sizes = {}
    for pid in [master, *children_of(master)]:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            sizes[pid] = rss_kib(pid)
    return sizes


def _master_fds(master: int, workers: int) -> list[str]:
    """The master's descriptors at a moment it has its full set of workers (it holds
    one heartbeat file per worker, so a worker being replaced shifts the count)."""
    end = time.monotonic() + 10
    while True:
        if len(children_of(master)) == workers:
            fds = open_fds(master)
            if len(children_of(master)) == workers:
                return fds
        assert time.monotonic() < end, "the master never had all its workers"
        time.sleep(0.01)


def soak(
    serve_app: Any, strategy: str, seconds: float, **extra: Any
) -> tuple[Any, dict[int, int], dict[int, int], list[str], list[str]]:
    """Load ``strategy`` at 2x capacity for ``seconds``; return the result, memory of each
    process after the warm-up and at the end, and the master's descriptors then and now."""
    options, capacity = CONFIGS[strategy]
    server = serve_app(strategy=strategy, access_log=False, **options, **extra)
    clients = 2 * capacity
    loads = [Load(server.url, clients // len(PATHS) + 1, path) for path in PATHS]
    for load in loads:
        load.__enter__()
    try:
        warmup = min(WARMUP_SECONDS, seconds / 3)
        time.sleep(warmup)
        workers = options["workers"]
        before, fds_before = _memory(server.pid), _master_fds(server.pid, workers)
        time.sleep(seconds - warmup)
        after, fds_after = _memory(server.pid), _master_fds(server.pid, workers)
        for load in loads:
            load.stopping()
        assert server.stop(signal.SIGTERM) == 0
    finally:
        for load in loads:
            load.__exit__(None, None, None)
    result = loads[0].result
    for load in loads[1:]:
        for name in ("completed", "rejected", "lost", "refused", "unanswered"):
            setattr(result, name, getattr(result, name) + getattr(load.result, name))
        result.losses += load.result.losses
    result.clients = sum(len(load._threads) for load in loads)
    return result, before, after, fds_before, fds_after


def assert_clean(result: Any) -> None:
    assert result.lost == 0, result.losses[:10]
    assert result.rejected == 0
    assert result.unanswered == 0
    assert result.refused == result.clients  # only at the end, one per client
    assert result.completed > 0


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", GUNICORN)
def test_soak_60s_at_twice_capacity(serve_app: Any, strategy: str) -> None:
    """60 s at 2x capacity: every request completes, memory stays within the bound
    (per process, warm to end), the master's descriptors are unchanged."""
    result, before, after, fds_before, fds_after = soak(serve_app, strategy, 60)
    growth = {pid: after.get(pid, 0) - kib for pid, kib in before.items()}
    result.row(
        f"soak 60s {strategy}",
        rss_warm_kib=list(before.values()),
        rss_growth_kib=list(growth.values()),
        master_fds=len(fds_after),
    )
    assert_clean(result)
    assert set(after) == set(before), "a worker was replaced during the soak"
    for pid, kib in before.items():
        assert growth[pid] <= max(RSS_GROWTH_KIB, RSS_GROWTH_RATIO * kib), (pid, kib, growth)
    assert fds_after == fds_before


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", GUNICORN)
def test_soak_with_recycling_keeps_the_master_clean(serve_app: Any, strategy: str) -> None:
    """30 s at 2x capacity with max_requests=50: dozens of workers come and go; every
    request completes and the master ends with the descriptors it started with."""
    result, _, _, fds_before, fds_after = soak(
        serve_app, strategy, 30, max_requests=50, max_requests_jitter=10
    )
    result.row(f"soak 30s recycling {strategy}")
    assert_clean(result)
    assert len(fds_after) == len(fds_before), (fds_before, fds_after)


@pytest.mark.parametrize("strategy", ["gthread", "gevent"])
def test_short_soak(serve_app: Any, strategy: str) -> None:
    """6 s at 2x capacity with recycling: the soak's checks, briefly, in every run."""
    result, _, _, fds_before, fds_after = soak(
        serve_app, strategy, 6, max_requests=50, max_requests_jitter=10
    )
    result.row(f"soak 6s recycling {strategy}")
    assert_clean(result)
    assert len(fds_after) == len(fds_before), (fds_before, fds_after)
