"""Slow and stalled clients end at deadlines and do not take the server's capacity.

Against each gunicorn strategy, N connections of each kind attack at once, each
reconnecting as soon as the server lets it go: slow heads (a byte every 0.5 s), slow
bodies (a complete head, then a body byte every 0.5 s), slow readers (a 64 MiB
response nobody reads) and idle connections (nothing sent). Meanwhile a good client asks
every 0.5 s. Deadlines are short here (``header_timeout=2``, ``timeout=4``), so each slow
connection must be closed within its deadline plus a margin, the good client must be
served, and the workers must hold no more descriptors afterwards than before.

The werkzeug strategies get each kind of slow client alone (one connection takes a
thread or process there, and on ``dev`` the server), with ``header_timeout=1``: each is
cut near its deadline and logged once, oversized bodies get 413, and ``header_timeout=3``
cuts a head later than ``header_timeout=1``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servekit import resolve
from tests.conftest import children_of, open_fds, read_response

pytestmark = [pytest.mark.server, pytest.mark.reliability]

HEADER_TIMEOUT = 2.0
TIMEOUT = 4  # the write deadline (sync: half of it)
LIMITS: dict[str, Any] = {"header_timeout": HEADER_TIMEOUT, "timeout": TIMEOUT}
CONFIGS: dict[str, dict[str, Any]] = {
    "sync": {"workers": 2},
    "gthread": {"workers": 2, "threads": 2},
    "gevent": {"workers": 1, "worker_connections": 1000},
    "eventlet": {"workers": 1, "worker_connections": 1000},
    "tornado": {"workers": 2, "threads": 2},
}
GUNICORN = list(CONFIGS)
#: the capacity of the cooperative configs is 1000; their N in the default run is 4
COOPERATIVE_N = 4
ATTACK_SECONDS = 7.0
#: the fraction of good requests served that is asserted: the issue's 90 % goal where a
#: slow client does not take capacity (gthread and tornado: a request waiting on its
#: client gives its thread slot back); where one connection is a worker (sync, dev,
#: processes) the deadlines only bound the damage, and recovery is asserted instead
GOAL = {
    "sync": 0.0,
    "gthread": 0.9,
    "gevent": 0.9,
    "eventlet": 0.9,
    "tornado": 0.9,
    "threaded": 0.9,
    "dev": 0.0,
    "processes": 0.0,
}
#: the werkzeug strategies under the same attack: no `timeout` option there, the write
#: deadline is werkzeug's fixed 10 s
WERKZEUG_ATTACKED: dict[str, dict[str, Any]] = {
    "threaded": {},
    "dev": {},
    "processes": {"workers": 2},
}
WERKZEUG_WRITE = 10.0
#: strategies where slow connections still take capacity, so that an attacker waits in
#: the listen queue and its lifetime seen from the client includes that wait
QUEUES = {"sync", "dev", "processes"}
#: how late a close may come after its deadline (the deadlines' quantum, scheduling)
MARGIN = 1.5
KINDS = ("head", "body", "reader", "idle")
RESULTS = Path(os.environ.get("SERVEKIT_SLOW_RESULTS", "/tmp/servekit-slow-clients.jsonl"))


def deadline(kind: str, strategy: str) -> float:
    """Seconds after connecting by which the server must have closed a ``kind`` attacker."""
    write = {"sync": TIMEOUT / 2}.get(strategy, TIMEOUT)
    if strategy in WERKZEUG_ATTACKED:
        write = WERKZEUG_WRITE
    # a body: its head at once, then the grace (header_timeout of waiting), then the check
    return {
        "head": HEADER_TIMEOUT,
        "idle": HEADER_TIMEOUT,
        "body": 2 * HEADER_TIMEOUT,
        "reader": write,
    }[kind]


@dataclass
class Attack:
    """Attackers of every kind, reconnecting until stopped; each records how long the
    server kept its connection."""

    port: int
    n: int
    kinds: tuple[str, ...] = KINDS
    stop: threading.Event = field(default_factory=threading.Event)
    lifetimes: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    replies: dict[str, list[bytes]] = field(default_factory=lambda: {k: [] for k in KINDS})
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for kind in self.kinds:
            for _ in range(self.n):
                thread = threading.Thread(target=self._loop, args=(kind,), daemon=True)
                thread.start()
                self.threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _loop(self, kind: str) -> None:
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                time.sleep(0.1)
                continue
            with sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                started = time.monotonic()
                reply = self._one(kind, sock)
                if reply is not None:
                    self.lifetimes[kind].append(time.monotonic() - started)
                    self.replies[kind].append(reply[:40])

    def _one(self, kind: str, sock: socket.socket) -> bytes | None:
        """Attack on ``sock`` until the server closes it: what it sent first (None: the
        attack was stopped first)."""
        sock.settimeout(0.5)
        if kind == "body":
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        elif kind == "reader":
            sock.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
        trickle = iter(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 1000)
        first = b""
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.stop.is_set() and kind != "reader":
                return None
            try:
                if kind == "head":
                    sock.send(bytes([next(trickle)]))
                elif kind == "body":
                    sock.send(b"x")
                if kind == "reader":
                    # read nothing (a window of 4 KiB); only notice the close
                    time.sleep(0.5)
                    if _closed(sock):
                        return b"closed"
                    continue
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return first or b"reset"
            if not data:
                return first or b"closed"
            first = first or data
        return first or b"never closed"


def _closed(sock: socket.socket) -> bool:
    """Whether the peer ended a connection we do not read (a reset shows on a probe)."""
    try:
        sock.send(b"x")
    except OSError:
        return True
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return info[0] in (7, 8, 9)  # TCP_CLOSE, TCP_CLOSE_WAIT, TCP_LAST_ACK


def good_client(port: int, stop: threading.Event, results: list[bool]) -> None:
    """One request every 0.5 s; served means a 200 within 2 s."""
    while not stop.is_set():
        began = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            results.append(conn.getresponse().status == 200)
        except OSError:
            results.append(False)
        finally:
            conn.close()
        stop.wait(max(0.0, 0.5 - (time.monotonic() - began)))


def socket_fds(pid: int) -> int:
    return sum(1 for child in children_of(pid) for target in open_fds(child) if "socket" in target)


def recovery_bound(strategy: str) -> float:
    """Seconds after the attack by which a good request must be served again: the
    longest deadline (a slow reader's) after the last attacker's connect, and a margin."""
    return HEADER_TIMEOUT + deadline("reader", strategy) + MARGIN


def n_for(strategy: str, heavy: bool) -> int:
    if heavy:
        return 200
    if strategy in ("gevent", "eventlet", "threaded"):
        return COOPERATIVE_N
    options = WERKZEUG_ATTACKED[strategy] if strategy in WERKZEUG_ATTACKED else CONFIGS[strategy]
    stated = resolve(None, strategy, environ={}, **options).capacity
    assert stated is not None
    return stated


def start_attacked(serve_app: Any, strategy: str) -> Any:
    """A server for ``strategy`` with the test's short deadlines."""
    if strategy in WERKZEUG_ATTACKED:
        return serve_app(
            strategy=strategy,
            access_log=False,
            header_timeout=HEADER_TIMEOUT,
            **WERKZEUG_ATTACKED[strategy],
        )
    return serve_app(
        strategy=strategy, access_log=False, graceful_timeout=5, **LIMITS, **CONFIGS[strategy]
    )


def run_attack(
    serve_app: Any, strategy: str, n: int, kinds: tuple[str, ...] = KINDS
) -> dict[str, Any]:
    return attack_server(start_attacked(serve_app, strategy), strategy, n, kinds)


def attack_all(
    serve_app: Any, strategies: list[str] | tuple[str, ...], kinds: tuple[str, ...], factor: int
) -> dict[str, dict[str, Any]]:
    """The same attack on one server per strategy, all at once (the attacks mostly wait on
    deadlines, so running them side by side costs the time of one): each row by strategy."""
    servers = {name: start_attacked(serve_app, name) for name in strategies}
    rows: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def one(name: str) -> None:
        try:
            rows[name] = attack_server(servers[name], name, factor * n_for(name, False), kinds)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(name,)) for name in strategies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    return rows


def attack_server(server: Any, strategy: str, n: int, kinds: tuple[str, ...]) -> dict[str, Any]:
    port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
    time.sleep(0.5)
    fds_before = socket_fds(server.pid)
    attack = Attack(port, n, kinds)
    stop = threading.Event()
    served: list[bool] = []
    attack.start()
    time.sleep(0.5)
    good = threading.Thread(target=good_client, args=(port, stop, served), daemon=True)
    good.start()
    time.sleep(ATTACK_SECONDS)
    stop.set()
    good.join(10)
    attack.join()
    ended = time.monotonic()
    recovered = None
    while time.monotonic() < ended + recovery_bound(strategy):
        ok: list[bool] = []
        good_client_once(port, ok)
        if ok and ok[0]:
            recovered = time.monotonic() - ended
            break
    time.sleep(HEADER_TIMEOUT + MARGIN)
    fds_after = socket_fds(server.pid)
    row = {
        "strategy": strategy,
        "kinds": list(kinds),
        "n": n,
        "served": sum(served) / max(1, len(served)),
        "asked": len(served),
        "recovered_s": recovered,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "closed_within_s": {k: max(v, default=None) for k, v in attack.lifetimes.items()},
        "closes": {k: len(v) for k, v in attack.lifetimes.items()},
        "first_reply": {k: sorted(set(v))[:3] for k, v in attack.replies.items()},
    }
    with RESULTS.open("a") as out:
        out.write(json.dumps(row, default=repr) + "\n")
    row["log"] = server.log()
    return row


def good_client_once(port: int, results: list[bool]) -> None:
    stop = threading.Event()
    stop.set()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        results.append(conn.getresponse().status == 200)
    except OSError:
        results.append(False)
    finally:
        conn.close()


#: the margin with 200 attackers of each kind: 800 client threads in this process notice a
#: close later (a reader probes every 0.5 s, and waits its turn for the interpreter)
HEAVY_MARGIN = 2.5
#: with 200 of each kind tornado's connections also wait in the listen queue before they
#: are accepted (its loop accepts while the threads are not all taken, a few at a time):
#: measured up to 1 s, counted in the lifetimes seen from the client
HEAVY_QUEUE = {"tornado": 1.5}


def check(row: dict[str, Any], strategy: str, margin: float = MARGIN) -> None:
    summary = {k: v for k, v in row.items() if k != "log"}
    assert row["served"] >= GOAL[strategy], summary
    assert row["recovered_s"] is not None, summary
    assert row["recovered_s"] <= recovery_bound(strategy), summary
    assert row["fds_after"] <= row["fds_before"] + 1, summary
    for kind, longest in row["closed_within_s"].items():
        if strategy in QUEUES:
            continue  # queued behind busy workers: the deadline counts from the accept
        assert longest is not None, (kind, summary)
        assert longest <= deadline(kind, strategy) + margin, (kind, summary)
    heads = row["first_reply"]["head"]
    if strategy != "dev" or heads:
        # dev serves one connection at a time: a head attacker may never get its turn
        # during the attack (dev's 408 is checked alone in test_werkzeug_deadlines)
        assert any(reply.startswith(b"HTTP/1.1 408") for reply in heads), summary
    assert "Closing connection from" in row["log"]


def test_slow_clients_end_at_their_deadlines(serve_app: Any) -> None:
    """N = capacity slow-head, slow-body, slow-reader and idle clients against each gunicorn
    strategy and each werkzeug one (side by side): the good client is served (90% on the
    cooperative strategies and threaded), each slow connection ends at its deadline (on
    dev and processes, where one connection is the server or one of its processes, the
    server serves again at once after the attack), no descriptor is left."""
    attacked = [*GUNICORN, *WERKZEUG_ATTACKED]
    rows = attack_all(serve_app, attacked, KINDS, 1)
    for strategy in attacked:
        check(rows[strategy], strategy)


#: strategies that read request heads without holding a thread or a worker
HEADS_FREE = ("gthread", "tornado", "gevent")


def test_slow_heads_and_idle_connections_take_no_capacity(serve_app: Any) -> None:
    """Twice the capacity in slow-head and in idle connections (gthread, tornado, gevent,
    side by side): the good client is still served (their heads are awaited without a
    thread), and each ends at its deadline."""
    rows = attack_all(serve_app, HEADS_FREE, ("head", "idle"), 2)
    for strategy in HEADS_FREE:
        row = rows[strategy]
        summary = {k: v for k, v in row.items() if k != "log"}
        assert row["served"] >= 0.9, summary
        for kind in ("head", "idle"):
            longest = row["closed_within_s"][kind]
            assert longest is not None, (kind, summary)
            assert longest <= deadline(kind, strategy) + MARGIN, (kind, summary)
        heads = row["first_reply"]["head"]
        assert any(reply.startswith(b"HTTP/1.1 408") for reply in heads), summary


SLOTTED = ("gthread", "tornado")


def _slow_work(port: int, replies: list[bytes]) -> None:
    """POST /work with a 10-byte body trickled over a second; keep the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        for _ in range(10):
            time.sleep(0.1)
            sock.sendall(b"x")
        replies.append(read_response(sock))


def test_uploads_wait_without_a_slot_and_the_app_runs_threads_at_once(serve_app: Any) -> None:
    """gthread and tornado, one worker of 2 threads, 6 uploads trickled over a second: a
    good request during the trickle is answered at once (the uploads wait on their
    clients without a thread slot), all 6 are served, and no more than 2 requests ever
    ran app code at the same time (an upload takes a slot again before the app goes on)."""
    servers = {
        name: serve_app(strategy=name, workers=1, threads=2, access_log=False) for name in SLOTTED
    }
    for name, server in servers.items():
        port = _port(server)
        replies: list[bytes] = []
        uploads = [threading.Thread(target=_slow_work, args=(port, replies)) for _ in range(6)]
        for thread in uploads:
            thread.start()
        time.sleep(0.4)
        began = time.monotonic()
        with urllib.request.urlopen(server.url + "/", timeout=5) as resp:
            assert resp.read() == b"ok"
        waited = time.monotonic() - began
        for thread in uploads:
            thread.join(20)
        assert waited < 0.5, (name, waited)  # not behind the uploads (they end after 1 s)
        assert len(replies) == 6 and all(r.endswith(b"worked") for r in replies), (name, replies)
        with urllib.request.urlopen(server.url + "/most-at-once", timeout=5) as resp:
            assert resp.read() == b"2", name


@pytest.mark.heavy
@pytest.mark.parametrize("strategy", GUNICORN)
def test_two_hundred_slow_clients_of_each_kind(serve_app: Any, strategy: str) -> None:
    """The same with 200 attackers of each kind."""
    margin = HEAVY_MARGIN + HEAVY_QUEUE.get(strategy, 0.0)
    check(run_attack(serve_app, strategy, n_for(strategy, heavy=True)), strategy, margin)


def _exchange(port: int, data: bytes, *, pause: float = 0.0, rest: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if pause:
            time.sleep(pause)
        try:
            if rest:
                sock.sendall(rest)
        except OSError:
            pass
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
        return reply


@pytest.mark.parametrize("strategy", GUNICORN)
def test_oversized_bodies_get_413_and_late_heads_408(serve_app: Any, strategy: str) -> None:
    """A Content-Length or a chunked body past max_body_size is answered 413; a head not
    complete within header_timeout gets 408."""
    server = serve_app(
        strategy=strategy,
        access_log=False,
        max_body_size=1000,
        header_timeout=1,
        **CONFIGS[strategy],
    )
    port = int(server.url.rsplit(":", 1)[1].rstrip("/"))
    declared = _exchange(port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    chunked = _exchange(
        port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3,
        rest=b"0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    small = _exchange(
        port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + b"y" * 10
    )
    assert small.startswith(b"HTTP/1.1 200") and small.endswith(b"10"), small[:200]
    late = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n", pause=2.0, rest=b"\r\n")
    assert late.startswith(b"HTTP/1.1 408"), late[:200]
    log = server.log()
    assert "(413)" in log and "(408)" in log


# The werkzeug strategies: one connection at a time per thread or process (dev: the only
# one), so each kind of slow client is sent alone and timed from its own client.

WERKZEUG = ["dev", "threaded", "processes"]
WERKZEUG_CONFIGS: dict[str, dict[str, Any]] = {
    "dev": {},
    "threaded": {},
    "processes": {"workers": 2},
}
#: the werkzeug strategies' write deadline (they have no ``timeout`` option)
WERKZEUG_WRITE_TIMEOUT = 10.0


def _until_closed(
    port: int, head: bytes, trickle: bytes = b"", every: float = 0.2
) -> tuple[bytes, float]:
    """Send ``head``, then ``trickle`` a byte every ``every`` seconds, until the server
    ends the connection: what it answered, and how long after connecting it did so."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head)
        sock.settimeout(every)
        reply = b""
        pending = iter(trickle)
        while time.monotonic() < started + 30:
            try:
                byte = next(pending, None)
                if byte is not None and not reply:
                    sock.send(bytes([byte]))
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            reply += data
        return reply, time.monotonic() - started


def _port(server: Any) -> int:
    return int(server.url.rsplit(":", 1)[1].rstrip("/"))


SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200


@pytest.mark.parametrize("strategy", WERKZEUG)
def test_werkzeug_deadlines(serve_app: Any, strategy: str) -> None:
    """On each werkzeug strategy: a trickled head gets 408 at header_timeout, an idle
    connection is closed quietly, a slow body is cut after the grace, a Content-Length
    over max_body_size gets 413 without the app, a chunked body past it 413, and good
    requests are served; every cut is logged."""
    server = serve_app(
        strategy=strategy,
        access_log=False,
        header_timeout=1,
        max_body_size=1000,
        **WERKZEUG_CONFIGS[strategy],
    )
    port = _port(server)
    ok = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"ok"), ok[:200]

    late, took = _until_closed(port, b"", SLOW_HEAD)
    assert late.startswith(b"HTTP/1.1 408"), late[:200]
    assert 0.8 <= took <= 1 + MARGIN, took

    idle, took = _until_closed(port, b"")
    assert idle == b"", idle[:200]
    assert 0.8 <= took <= 1 + MARGIN, took

    body_head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n"
    slow_body, took = _until_closed(port, body_head, b"x" * 100)
    assert not slow_body.startswith(b"HTTP/1.1 200"), slow_body[:200]
    assert took <= 2 * 1 + MARGIN, took

    # /pid answers 200 without reading the body: a 413 means the app did not run
    declared = _exchange(port, b"POST /pid HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]

    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    chunked = _exchange(
        port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3,
        rest=b"0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    small = _exchange(
        port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + b"y" * 10
    )
    assert small.startswith(b"HTTP/1.1 200") and small.endswith(b"10"), small[:200]
    small_chunked = _exchange(
        port,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"a\r\n" + b"z" * 10 + b"\r\n0\r\n\r\n",
    )
    assert small_chunked.startswith(b"HTTP/1.1 200"), small_chunked[:200]
    assert small_chunked.endswith(b"10"), small_chunked[:200]

    log = server.log()
    for reason in (
        "request head not complete within 1s (408)",
        "no request within 1s",
        "request body slower than 1024 bytes/s",
        "Content-Length 5000 is over 1000 bytes (413)",
        "chunked request body over 1000 bytes (413)",
    ):
        assert "Closing connection from 127.0.0.1:" in log and reason in log, (reason, log)
        assert log.count(reason) == 1, (reason, log)


def test_werkzeug_header_timeout_and_write_deadline(serve_app: Any) -> None:
    """header_timeout=3 cuts a trickled head about three times later than
    header_timeout=1 (a ratio, with a wide margin), and a client that stops reading a
    large response is let go at the write deadline."""
    fast = serve_app(strategy="threaded", access_log=False, header_timeout=1)
    slow = serve_app(strategy="threaded", access_log=False, header_timeout=3)
    lifetimes: dict[str, float] = {}

    def reader() -> None:
        with socket.create_connection(("127.0.0.1", _port(slow)), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            started = time.monotonic()
            sock.sendall(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
            while time.monotonic() < started + 30 and not _closed(sock):
                time.sleep(0.5)
            lifetimes["reader"] = time.monotonic() - started

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    reply_1, took_1 = _until_closed(_port(fast), b"", SLOW_HEAD)
    reply_3, took_3 = _until_closed(_port(slow), b"", SLOW_HEAD)
    assert reply_1.startswith(b"HTTP/1.1 408") and reply_3.startswith(b"HTTP/1.1 408")
    assert took_3 / took_1 >= 1.8, (took_1, took_3)
    thread.join(40)
    assert (
        WERKZEUG_WRITE_TIMEOUT - 0.5 <= lifetimes["reader"] <= WERKZEUG_WRITE_TIMEOUT + 2 * MARGIN
    )
    assert "client did not read the response for 10s" in slow.log()


def _trickle(sock: socket.socket, data: bytes, seconds: float) -> None:
    for byte in data:
        sock.send(bytes([byte]))
        time.sleep(seconds / len(data))


KEEPALIVE_STRATEGIES = ("gevent", "eventlet", "tornado", "gthread")


def _kept_alive_exchange(port: int) -> str | None:
    """Two requests trickled over 2.5 s each on one connection, then silence: what went
    wrong, or None."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for which in ("first", "second"):
            try:
                _trickle(sock, request, 2.5)
                reply = read_response(sock)
            except OSError as exc:
                return f"{which} request: {exc!r}"
            if not reply.startswith(b"HTTP/1.1 200"):
                return f"{which} request: {reply[:80]!r}"
            time.sleep(0.3)
        started = time.monotonic()
        if sock.recv(65536) != b"":
            return "not closed after the keep-alive limit"
        if time.monotonic() - started > 3.0:
            return f"closed after {time.monotonic() - started:.1f}s of silence"
    return None


def test_keepalive_bounds_silence_not_a_slow_head(serve_app: Any) -> None:
    """keepalive=1 ends a kept-alive connection that stays silent (quietly), but neither a
    first request nor a next one whose head trickles in over 2.5 s: header_timeout (4 s)
    bounds a head once it has begun (gevent, eventlet, tornado, gthread side by side)."""
    ports = {
        name: int(
            serve_app(
                strategy=name, access_log=False, keepalive=1, header_timeout=4, **CONFIGS[name]
            )
            .url.rsplit(":", 1)[1]
            .rstrip("/")
        )
        for name in KEEPALIVE_STRATEGIES
    }
    problems: dict[str, str | None] = {}
    threads = [
        threading.Thread(
            target=lambda n=name: problems.__setitem__(n, _kept_alive_exchange(ports[n]))
        )
        for name in KEEPALIVE_STRATEGIES
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert problems == dict.fromkeys(KEEPALIVE_STRATEGIES), problems


#: one strategy per code path that enforces max_body_size
BODY_LIMIT_PATHS = ("dev", "gthread", "gevent", "tornado", "granian")


def test_flask_gets_413_for_a_chunked_upload_past_max_body_size(serve_app: Any) -> None:
    """Flask catches the error that ends a chunked upload past max_body_size and answers its
    own 500; servekit answers 413 all the same (read whole, and as a multipart form)."""
    ports = {
        name: int(
            serve_app(
                app="tests.apps.flask_upload:app",
                strategy=name,
                access_log=False,
                max_body_size=1000,
            )
            .url.rsplit(":", 1)[1]
            .rstrip("/")
        )
        for name in BODY_LIMIT_PATHS
    }
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    chunked = b"Host: x\r\nTransfer-Encoding: chunked\r\n"
    boundary = b"--b\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\n"
    replies = {}
    for name, port in ports.items():
        whole = _exchange(
            port, b"POST /upload HTTP/1.1\r\n" + chunked + b"\r\n" + chunk * 3 + b"0\r\n\r\n"
        )
        form = _exchange(
            port,
            b"POST /form HTTP/1.1\r\n"
            + chunked
            + b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            + b"%x\r\n" % len(boundary)
            + boundary
            + b"\r\n"
            + chunk * 3
            + b"0\r\n\r\n",
        )
        small = _exchange(
            port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n" + b"y" * 10
        )
        replies[name] = (whole[:12], form[:12], small[:12] + small[-2:])
    expected = (b"HTTP/1.1 413", b"HTTP/1.1 413", b"HTTP/1.1 20010")
    assert replies == dict.fromkeys(BODY_LIMIT_PATHS, expected), replies
