"""The metrics listener tells the truth about a running server: capacity, in flight, queue, totals."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from typing import Any

import pytest

from servekit.testing import options_for
from tests.conftest import burst, children_of, free_port, get, read_response, run_cli

pytestmark = pytest.mark.server

STRATEGIES = ["dev", "threaded", "processes", "sync", "gthread", "gevent", "eventlet", "tornado"]
_SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$")


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    """GET the metrics listener."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` without the strategy labels -> value."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        extra = ",".join(
            part
            for part in (labels or "{}")[1:-1].split(",")
            if part and not part.startswith(("strategy=", "worker_class="))
        )
        found[f"{name}{{{extra}}}" if extra else name] = float(value)
    return found


def _settled(port: int) -> dict[str, float]:
    """A scrape once nothing is in flight (the last response may still be closing)."""
    deadline = time.monotonic() + 5
    while True:
        status, text = scrape(port)
        assert status == 200, text
        now = samples(text)
        if now["servekit_in_flight"] == 0 or time.monotonic() > deadline:
            assert now["servekit_in_flight"] == 0, now
            return now
        time.sleep(0.05)


def _serve(serve_app: Any, strategy: str, **options: Any) -> tuple[Any, int]:
    port = free_port()
    sized = options_for(strategy, workers=options.pop("workers", 2), threads=2)
    sized.update(worker_connections=2) if strategy in ("gevent", "eventlet") else None
    server = serve_app(strategy=strategy, metrics=f"127.0.0.1:{port}", **sized, **options)
    return server, port


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gauges_and_counters_under_load(serve_app: Any, strategy: str) -> None:
    """While slow requests run, in_flight is what the capacity lets run and the rest wait
    in the kernel's queue; afterwards the counters match the requests sent."""
    server, port = _serve(serve_app, strategy)
    first = _settled(port)
    capacity = first["servekit_capacity"]
    before = first['servekit_requests_total{status_class="2xx"}']
    errors = first['servekit_requests_total{status_class="5xx"}']
    count = first["servekit_request_duration_seconds_count"]
    sent = 6 if capacity == float("inf") else int(capacity) + 2
    seen: list[dict[str, float]] = []

    def watch() -> None:
        time.sleep(0.6)
        seen.append(samples(scrape(port)[1]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, results = burst(server.url, sent, "/sleep?s=1.5")
    watcher.join()
    assert all(r == 200 for r in results), results
    during = seen[0]
    expected = min(sent, capacity)
    assert during["servekit_in_flight"] == expected, during
    if "servekit_listen_queue" in during and capacity != float("inf"):
        assert abs(during["servekit_listen_queue"] - (sent - expected)) <= 1, during
    # An app that raises, before or after start_response: the server answers 500 and
    # the counters say 5xx.
    assert get(server.url, "/boom")[0] == 500
    assert get(server.url, "/boom-after-start")[0] == 500
    after = _settled(port)
    assert after['servekit_requests_total{status_class="2xx"}'] == before + sent
    assert after['servekit_requests_total{status_class="5xx"}'] == errors + 2, after
    assert after["servekit_request_duration_seconds_count"] == count + sent + 2
    slow = (
        after['servekit_request_duration_seconds_bucket{le="2.5"}']
        - after['servekit_request_duration_seconds_bucket{le="1"}']
    )
    assert slow == sent


@pytest.mark.parametrize("strategy", ["gthread", "tornado"])
def test_requests_waiting_on_clients_are_counted_apart(serve_app: Any, strategy: str) -> None:
    """Uploads stalled by their clients count in flight and in waiting_on_clients (they
    hold no thread), and leave both when they end."""
    server, port = _serve(serve_app, strategy, workers=1)
    host, app_port = server.url.removeprefix("http://").rsplit(":", 1)
    uploads = []
    for _ in range(3):
        sock = socket.create_connection((host, int(app_port)), timeout=10)
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        uploads.append(sock)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            now = samples(scrape(port)[1])
            if now["servekit_waiting_on_clients"] == 3:
                break
            time.sleep(0.05)
        assert now["servekit_waiting_on_clients"] == 3, now
        assert now["servekit_in_flight"] == 3, now
        assert now["servekit_capacity"] == 2
        for sock in uploads:
            sock.sendall(b"defghij")
        for sock in uploads:
            assert read_response(sock).startswith(b"HTTP/1.1 200"), sock
    finally:
        for sock in uploads:
            sock.close()
    after = _settled(port)
    assert after["servekit_waiting_on_clients"] == 0, after


def test_user_request_hooks_still_run_with_metrics(serve_app: Any) -> None:
    """servekit meters from gunicorn's pre_request and post_request hooks: the user's own
    hooks, given through the gunicorn option, still run."""
    server, port = _serve(
        serve_app,
        "sync",
        workers=1,
        gunicorn={
            "pre_request": "tests.apps.hooks.mark_request",
            "post_request": "tests.apps.hooks.note_end",
        },
    )
    before = _settled(port)['servekit_requests_total{status_class="2xx"}']
    status, body = get(server.url, "/hooked")
    assert (status, body) == (200, b"pre_request ran")
    assert _settled(port)['servekit_requests_total{status_class="2xx"}'] == before + 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any("post_request hook ran for /hooked" in str(e.get("event")) for e in server.events()):
            break
        time.sleep(0.1)
    else:
        pytest.fail(server.log())


def test_killed_worker_counts_as_a_restart(serve_app: Any) -> None:
    """A worker killed by a signal shows in servekit_worker_restarts_total{reason="signal"}."""
    server, port = _serve(serve_app, "sync")
    workers = children_of(server.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = samples(scrape(port)[1])
        if now['servekit_worker_restarts_total{reason="signal"}'] == 1 and now[
            "servekit_workers"
        ] == 2:
            break
        time.sleep(0.2)
    assert now['servekit_worker_restarts_total{reason="signal"}'] == 1, now
    assert now["servekit_workers"] == 2
    assert get(server.url, "/")[0] == 200


def test_recycled_worker_keeps_its_counts(serve_app: Any) -> None:
    """A worker recycled by max_requests counts as reason "exit", and its requests stay counted."""
    server, port = _serve(serve_app, "sync", workers=1, max_requests=3)
    before = _settled(port)['servekit_requests_total{status_class="2xx"}']
    for _ in range(7):
        assert get(server.url, "/")[0] == 200
    time.sleep(1.0)
    now = _settled(port)
    assert now['servekit_requests_total{status_class="2xx"}'] == before + 7
    assert now['servekit_worker_restarts_total{reason="exit"}'] >= 2


def test_saturated_then_recovered(serve_app: Any) -> None:
    """Sustained overload logs one 'saturated' event with advice, and 'recovered' after."""
    server, _ = _serve(serve_app, "sync", workers=1)
    stop = time.monotonic() + 5.5
    threads = [
        threading.Thread(
            target=lambda: [get(server.url, "/sleep?s=0.5") for _ in range(30) if time.monotonic() < stop]
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    time.sleep(1.0)
    events = server.events()
    saturated = [e for e in events if e.get("event") == "saturated"]
    assert len(saturated) == 1, [e.get("event") for e in events]
    assert saturated[0]["capacity"] == 1 and saturated[0]["queued"] >= 1
    assert "workers" in saturated[0]["advice"]
    assert any(e.get("event") == "recovered" for e in events)


def test_ready_answers_while_serving(serve_app: Any) -> None:
    """/ready is 200 once the server serves; other paths are 404."""
    _, port = _serve(serve_app, "gthread")
    assert scrape(port, "/ready") == (200, "ready\n")
    assert scrape(port, "/nope")[0] == 404


def test_metrics_address_in_use_is_exit_2() -> None:
    """A metrics address already taken is one line naming 'metrics', exit 2, nothing served."""
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = free_port()
        proc = run_cli(
            "run", "tests.apps.slow:app", "--strategy", "sync", "--port", str(port),
            "--metrics", f"127.0.0.1:{taken.getsockname()[1]}",
        )
    finally:
        taken.close()
    assert proc.returncode == 2
    assert "option 'metrics'" in proc.stderr and "Traceback" not in proc.stderr


def test_metrics_refused_with_reload() -> None:
    """metrics with reload is refused: metrics are for a server that keeps running."""
    proc = run_cli("explain", "--strategy", "sync", "--metrics", "127.0.0.1:9", "--reload")
    assert proc.returncode == 2 and "option 'metrics'" in proc.stderr


def _request_events(server: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/?q=1", headers=headers)
    assert conn.getresponse().status == 200
    conn.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [
            e
            for e in server.events()
            if e.get("event") == "request" and e.get("user_agent") == headers["User-Agent"]
        ]
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(server.log())


HEADERS = {
    "User-Agent": "probe/1.0",
    "Referer": "http://example.test/from",
    "X-Forwarded-For": "203.0.113.7, 10.1.1.1",
    "X-Request-Id": "req-42",
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_access_log_fields(serve_app: Any, strategy: str) -> None:
    """The request event carries protocol, user_agent, referer, client and the headers
    access_log_fields names, on every strategy."""
    server = serve_app(
        strategy=strategy, access_log_fields="x-request-id", **options_for(strategy, workers=1)
    )
    event = _request_events(server, HEADERS)[-1]
    assert event["protocol"] == "HTTP/1.1"
    assert event["user_agent"] == "probe/1.0"
    assert event["referer"] == "http://example.test/from"
    assert event["x-request-id"] == "req-42"
    assert event["path"] == "/" and event["query"] == "q=1"
    # the peer (loopback) is trusted by default; 10.1.1.1 is not, so it is the client
    assert event["client"] == "10.1.1.1"


@pytest.mark.parametrize("strategy", ["sync", "gthread", "gevent", "eventlet", "tornado"])
def test_client_behind_trusted_and_untrusted_proxies(serve_app: Any, strategy: str) -> None:
    """client is the first untrusted X-Forwarded-For hop from a trusted peer, else the peer."""
    sized = options_for(strategy, workers=1)
    trusting = serve_app(strategy=strategy, forwarded_allow_ips="127.0.0.1,10.0.0.0/8", **sized)
    wary = serve_app(strategy=strategy, forwarded_allow_ips="10.9.9.9", **sized)
    assert _request_events(trusting, HEADERS)[-1]["client"] == "203.0.113.7"
    assert _request_events(wary, HEADERS)[-1]["client"] == "127.0.0.1"


@pytest.mark.parametrize("strategy", ["sync", "gthread", "gevent", "eventlet", "tornado"])
def test_statsd_through_gunicorns_settings(serve_app: Any, strategy: str) -> None:
    """gunicorn's statsd settings send to a real UDP listener, with the structlog access
    log still on."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    try:
        server = serve_app(
            strategy=strategy,
            gunicorn={
                "statsd_host": f"127.0.0.1:{sink.getsockname()[1]}",
                "statsd_prefix": "shop",
            },
            **options_for(strategy, workers=1),
        )
        for _ in range(3):
            assert get(server.url, "/")[0] == 200
        packets: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sum("gunicorn.requests:" in p for p in packets) < 3:
            with contextlib.suppress(TimeoutError):
                packets.append(sink.recv(4096).decode())
    finally:
        sink.close()
    assert sum(p.startswith("shop.gunicorn.requests:1|c") for p in packets) >= 3, packets
    assert any(p.startswith("shop.gunicorn.request.status.200:1|c") for p in packets)
    assert any(p.startswith("shop.gunicorn.request.duration:") and p.endswith("|ms") for p in packets)
    assert any(e.get("event") == "request" for e in server.events())


@pytest.mark.parametrize(
    ("key", "value", "pointer"),
    [
        ("access_log_format", "%(h)s", "access_log_fields"),
        ("syslog", True, "stderr"),
        ("capture_output", True, "stderr"),
    ],
)
def test_gunicorn_keys_that_would_do_nothing_are_refused(key: str, value: Any, pointer: str) -> None:
    """A gunicorn setting servekit's logger would make a no-op is refused, naming what to use."""
    proc = run_cli("explain", "--strategy", "sync", "--gunicorn", json.dumps({key: value}))
    assert proc.returncode == 2
    assert f"setting {key!r} would have no effect" in proc.stderr and pointer in proc.stderr


@pytest.mark.parametrize("strategy", ["threaded", "gthread"])
def test_ready_fails_while_draining(serve_app: Any, strategy: str) -> None:
    """From the moment a drain begins /ready answers 503, while requests in flight finish."""
    server, port = _serve(serve_app, strategy)
    slow = threading.Thread(target=lambda: get(server.url, "/sleep?s=2"))
    slow.start()
    time.sleep(0.5)
    os.kill(server.pid, signal.SIGTERM)
    time.sleep(0.3)  # the master acts on a signal from its loop
    deadline = time.monotonic() + 1.0
    answers = set()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            answers.add(scrape(port, "/ready"))
        time.sleep(0.1)
    slow.join(10)
    assert (503, "draining\n") in answers, answers
    assert (200, "ready\n") not in answers
