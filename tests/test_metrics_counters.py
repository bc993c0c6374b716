"""The metering logic alone: shared counters, gunicorn's request hooks, the saturation rule.

Serving is proven in tests/test_metrics.py against real servers; these pin the
arithmetic those tests cannot isolate (a dead worker's unfinished request, the status of
a request ended by an exception, a saturation that is only slow clients).
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest

from servekit.backends.gunicorn.metering import request_hooks
from servekit.metrics.counters import SLOT_WIDTH, Counters
from servekit.metrics.exporter import SATURATION_SECONDS, Exporter


def test_slots_fill_whole_cache_lines() -> None:
    """Two workers' slots never share a 64-byte line (no false sharing between cores)."""
    assert SLOT_WIDTH * 8 % 64 == 0


def test_in_flight_is_started_minus_ended_and_a_dead_worker_leaves_none() -> None:
    counters = Counters(2)
    counters.own(0, 100)
    counters.own(1, 101)
    first, second = counters.writer(0), counters.writer(1)
    for writer in (first, second, second):
        writer.begin()
    first.end(200, 0.002)
    snap = counters.snapshot()
    assert snap["in_flight"] == 2
    assert snap["count"] == 1 and snap["requests"]["2xx"] == 1
    second.end(503, 0.2)
    counters.retire(101)  # killed with one request unfinished
    snap = counters.snapshot()
    assert snap["in_flight"] == 0
    assert snap["requests"]["5xx"] == 1 and snap["count"] == 2
    assert dict(snap["buckets"])[0.005] == 1 and dict(snap["buckets"])[0.25] == 2


def test_waiting_requests_never_exceed_those_in_flight() -> None:
    counters = Counters(1)
    counters.own(0, 100)
    writer = counters.writer(0)
    writer.begin()
    writer.away(1)
    assert counters.snapshot()["away"] == 1
    writer.away(-1)
    writer.end(200, 0.1)
    assert counters.snapshot()["away"] == 0


class _Resp:
    def __init__(self, status_code: int | None, headers_sent: bool) -> None:
        self.status_code = status_code
        self.headers_sent = headers_sent


def _hooks(counters: Counters) -> tuple[Any, Any, list[str]]:
    exporter = SimpleNamespace(writer=lambda: counters.writer(0))
    calls: list[str] = []
    pre, post = request_hooks(
        exporter,  # type: ignore[arg-type]
        lambda worker, req: calls.append("pre"),
        lambda worker, req, environ, resp: calls.append("post"),
    )
    return pre, post, calls


@pytest.mark.parametrize(
    ("resp", "raising", "klass"),
    [
        (_Resp(201, True), False, "2xx"),
        (_Resp(None, False), False, "5xx"),  # start_response never called
        (_Resp(200, False), True, "5xx"),  # raised before a byte went out: gunicorn sends 500
        (_Resp(200, True), True, "2xx"),  # raised mid-body: the client has its 200
        (None, True, "5xx"),
    ],
)
def test_request_hooks_count_what_the_client_got(resp: Any, raising: bool, klass: str) -> None:
    counters = Counters(1)
    counters.own(0, 100)
    pre, post, calls = _hooks(counters)
    worker, req = SimpleNamespace(), SimpleNamespace()
    pre(worker, req)
    assert counters.snapshot()["in_flight"] == 1
    if raising:
        try:
            raise RuntimeError("the app failed")
        except RuntimeError:
            post(worker, req, {}, resp)
    else:
        post(worker, req, {}, resp)
    snap = counters.snapshot()
    assert snap["in_flight"] == 0 and snap["requests"][klass] == 1
    assert calls == ["pre", "post"]


def test_request_hooks_end_only_what_they_began() -> None:
    """post_request without pre_request (a request refused before it) counts nothing."""
    counters = Counters(1)
    counters.own(0, 100)
    _, post, calls = _hooks(counters)
    post(SimpleNamespace(), SimpleNamespace(), {}, _Resp(413, True))
    assert counters.snapshot()["count"] == 0 and calls == ["post"]


@pytest.mark.parametrize(("away", "saturated"), [(0, True), (1, False)])
def test_requests_waiting_on_clients_are_not_saturation(
    away: int, saturated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs: list[dict[str, Any]] = []

    class Recorder:
        def warning(self, event: str, **fields: Any) -> None:
            logs.append({"event": event, **fields})

        info = warning

    monkeypatch.setattr("servekit.metrics.exporter.get_logger", Recorder)
    counters = Counters(1)
    counters.own(0, 100)
    writer = counters.writer(0)
    for _ in range(3):
        writer.begin()
    writer.away(away)
    sock = socket.socket()
    try:
        exporter = Exporter(sock, counters, {"strategy": "gthread"}, 3, "add threads")
        exporter.queue = lambda: (4, 128)  # type: ignore[method-assign]
        for step in range(int(SATURATION_SECONDS * 4) + 4):
            exporter.check_saturation(1000.0 + step * 0.25)
    finally:
        sock.close()
    events = [e for e in logs if e["event"] == "saturated"]
    assert len(events) == (1 if saturated else 0), logs
    if saturated:
        assert events[0]["in_flight"] == 3 and events[0]["waiting_on_clients"] == 0
