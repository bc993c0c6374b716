"""Crash and recycle under load: a killed worker loses only what it held, recycling nothing.

A worker killed with SIGKILL takes the connections it had accepted with it (its
clients see a reset): at most one worker's capacity. The listen queue belongs to
the listening socket that the master and every sibling share, so what waits there
is served by the others and by the replacement. Recycling after ``max_requests``
(+ jitter) must lose nothing at all: the leaving worker finishes what it holds.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.conftest import Load, children_of, get

pytestmark = [pytest.mark.server, pytest.mark.reliability]

#: two workers each; what one worker holds at most is its share of the capacity
CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "sync": ({"workers": 2}, 1),
    "gthread": ({"workers": 2, "threads": 3}, 3),
    "gevent": ({"workers": 2, "worker_connections": 5}, 5),
    "eventlet": ({"workers": 2, "worker_connections": 5}, 5),
    "tornado": ({"workers": 2, "threads": 3}, 3),
}
GUNICORN = list(CONFIGS)


def wait_for_workers(master: int, count: int, gone: set[int], timeout: float = 20.0) -> set[int]:
    """Wait until ``master`` has ``count`` workers, none of them in ``gone``."""
    end = time.monotonic() + timeout
    while True:
        now = set(children_of(master))
        if len(now) == count and not now & gone:
            return now
        assert time.monotonic() < end, f"workers {now}, waiting for {count} without {gone}"
        time.sleep(0.05)


def finish(server: Any, load: Load) -> Any:
    """Stop the server gracefully under the load; return the load's result."""
    load.stopping()
    assert server.stop(signal.SIGTERM) == 0
    return load.join()


@pytest.mark.parametrize("strategy", GUNICORN)
def test_killed_worker_loses_only_the_requests_it_held(serve_app: Any, strategy: str) -> None:
    """SIGKILL one of two busy workers: at most its own capacity of requests fail,
    the master replaces it, and the load carries on without refusals."""
    options, per_worker = CONFIGS[strategy]
    clients = 2 * per_worker
    server = serve_app(strategy=strategy, access_log=False, **options)
    with Load(server.url, clients, "/sleep?s=0.3") as load:
        load.wait_for(completed=2 * clients)
        victim = sorted(children_of(server.pid))[0]
        os.kill(victim, signal.SIGKILL)
        wait_for_workers(server.pid, 2, {victim})
        after_kill = load.result.completed
        load.wait_for(completed=after_kill + 2 * clients)  # the load goes on
        result = finish(server, load)
    result.row(f"SIGKILL a {strategy} worker, clients={clients}")
    assert result.lost <= per_worker, result.losses
    assert result.rejected == 0
    assert result.refused == clients  # only when the server stopped at the end
    assert result.unanswered == 0


@pytest.mark.parametrize("strategy", GUNICORN)
def test_replacement_worker_serves(serve_app: Any, strategy: str) -> None:
    """With one worker, SIGKILL it: the replacement the master starts really serves
    (an eventlet replacement used to spin at boot and never answer)."""
    options, _ = CONFIGS[strategy]
    server = serve_app(strategy=strategy, **{**options, "workers": 1})
    (victim,) = children_of(server.pid)
    os.kill(victim, signal.SIGKILL)
    (replacement,) = wait_for_workers(server.pid, 1, {victim})
    status, body = get(server.url, "/pid", timeout=10)
    assert (status, int(body)) == (200, replacement)


def test_killed_request_process_loses_only_its_request(serve_app: Any) -> None:
    """processes: SIGKILL the process serving one request: that request fails, no other."""
    server = serve_app(strategy="processes", workers=2, access_log=False)
    with Load(server.url, 2, "/sleep?s=0.5") as load:
        load.wait_for(completed=4)
        end = time.monotonic() + 10
        while not (busy := children_of(server.pid)):
            assert time.monotonic() < end
            time.sleep(0.01)
        os.kill(busy[0], signal.SIGKILL)
        load.wait_for(completed=load.result.completed + 4)
        result = finish(server, load)
    result.row("SIGKILL a processes request, clients=2")
    assert result.lost <= 1, result.losses
    assert result.rejected == 0
    assert result.refused == 2


@pytest.mark.parametrize("strategy", GUNICORN)
def test_max_requests_recycling_under_load_loses_nothing(serve_app: Any, strategy: str) -> None:
    """max_requests=10 + jitter 5 at full load: workers are replaced again and again,
    and every request completes."""
    options, per_worker = CONFIGS[strategy]
    clients = 2 * per_worker
    server = serve_app(
        strategy=strategy,
        access_log=False,
        max_requests=10,
        max_requests_jitter=5,
        **options,
    )
    with Load(server.url, clients, "/sleep?s=0.05") as load:
        # Until each of the two workers has been replaced at least twice.
        end = time.monotonic() + 60
        while len(load.result.pids) < 6:
            assert time.monotonic() < end, f"workers seen: {dict(load.result.pids)}"
            time.sleep(0.05)
        result = finish(server, load)
    result.row(f"max_requests {strategy}, clients={clients}")
    # Recycled near the limit: a leaving worker also finishes what it holds and,
    # eventlet and tornado, what was queued when it left.
    assert max(result.pids.values()) <= 3 * 15
    assert result.lost == 0, (result.losses, server.log()[-5000:])
    assert result.rejected == 0
    assert result.refused == clients
    assert result.unanswered == 0


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", GUNICORN)
def test_repeated_kills_under_load(serve_app: Any, strategy: str) -> None:
    """Ten kills, one every half second or so: failures stay within what the killed held."""
    options, per_worker = CONFIGS[strategy]
    clients = 2 * per_worker
    server = serve_app(strategy=strategy, access_log=False, **options)
    kills = 10
    with Load(server.url, clients, "/sleep?s=0.2") as load:
        load.wait_for(completed=2 * clients)
        for _ in range(kills):
            victim = sorted(children_of(server.pid))[0]
            os.kill(victim, signal.SIGKILL)
            wait_for_workers(server.pid, 2, {victim})
            load.wait_for(completed=load.result.completed + clients)
        result = finish(server, load)
    result.row(f"{kills} SIGKILLs {strategy}, clients={clients}")
    assert result.lost <= kills * per_worker, result.losses
    assert result.rejected == 0
    assert result.refused == clients
