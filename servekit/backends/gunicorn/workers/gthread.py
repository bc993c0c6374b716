"""gunicorn's threaded worker, with request heads read on its poller and the listen queue
served at shutdown.

Use it as ``worker_class = "servekit.backends.gunicorn.workers.gthread.ThreadWorker"``.

gunicorn hands every accepted connection to a pool thread, which then waits for the
request head: a client that trickles its head, or sends nothing, holds a thread (and one
of servekit's ``worker_connections = threads`` slots) until its deadline, so a handful of
such clients takes the server's whole capacity. Here the worker's own poller reads each
head without a thread: a connection goes to the pool once its head is complete, and
counts against the threads from then on (and for its first ``_GRACE`` seconds, so that
a burst of new connections still spreads over the workers as the cap intends). The
deadlines are those of :class:`~.limits.Pace`: a head not complete ``header_timeout``
seconds after the accept, or after the previous response, gets ``408`` (a quiet close when
nothing came), and a kept-alive connection waits at most ``keepalive`` for its next
request. TLS connections and HTTP/2 prior knowledge keep gunicorn's way (the thread
reads the head, within the same deadlines).
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker

from servekit.backends.gunicorn.workers.clients import ClientLimit
from servekit.backends.gunicorn.workers.drain import RETRY_ACCEPT_ERRNOS, StopClock
from servekit.backends.gunicorn.workers.limits import (
    REPLY_408,
    Pace,
    Refuses413,
    begin_body,
    current,
)

__all__ = ["ThreadWorker"]

_IDLE_POLL_SECONDS = 0.01
#: seconds a new connection counts against the threads while its head is still awaited
_GRACE = 0.05
#: seconds connections waiting for a head are kept once a graceful stop begins
_STOP_LINGER = 2.0
#: at most this many connections wait for their heads per worker; past it the oldest goes
_MAX_WAITING = 1000
#: a head that grows past this many bytes goes to the parser whole or not (it refuses it)
_HEAD_MAX = 65536
#: a request line gunicorn's parser may take: the others are refused as soon as it is read
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \x00-\x20\x7f]+ HTTP/[0-9]\.[0-9]").fullmatch


class _Conn(TConn):  # type: ignore[misc]
    """gunicorn's connection, plus the head bytes read on the poller before the parser."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        #: bytes of the next request read on the poller, given to the parser first
        self.head = b""
        #: when the connection started waiting for its head
        self.since = time.monotonic()
        #: when the wait for the head ends (the connection is closed then)
        self.expires = 0.0
        #: whether it waits for a second or later request
        self.kept = False

    def init(self) -> None:
        super().init()
        if self.head:
            self.parser.unreader.unread(self.head)
            self.head = b""


def _head_ready(head: bytes, line_limit: int) -> bool:
    """Whether ``head`` should go to gunicorn's parser: complete, too long to wait for,
    or with line endings other than CRLF (the parser refuses those at once)."""
    if b"\n\r\n" in head or b"\n\n" in head or len(head) >= _HEAD_MAX:
        return True
    if b"\n" not in head and len(head) > line_limit + 2:
        return True  # a request line over the limit: refused as soon as it is read
    plain = head.replace(b"\r\n", b"")
    if b"\r" in plain[:-1] or b"\n" in plain:
        return True
    end = head.find(b"\r\n")
    return end >= 0 and _REQUEST_LINE(head, 0, end) is None  # refused once its line is in


class ThreadWorker(StopClock, Refuses413, _GunicornThreadWorker):  # type: ignore[misc]
    """``threads`` requests at once, as gunicorn's; request heads are read on the
    poller (see the module); on a graceful stop of the whole server it keeps accepting
    while it has a free thread, until the listen queue stays empty.

    gunicorn's threaded worker stops accepting on SIGTERM and finishes what it
    holds; the connections still queued on the listener are reset when the last
    worker closes it, after their clients sent a request (DESIGN §4 measured 7 with
    two workers of four threads).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drained = False
        #: connections whose heads are read on the poller (counted in ``nr_conns`` too)
        self._waiting: dict[_Conn, None] = {}
        #: new connections in ``_waiting``, oldest first, while they count as busy
        self._young: deque[_Conn] = deque()
        self._line_limit = int(self.cfg.limit_request_line) or 8190
        self._reads_heads = not self.cfg.is_ssl
        if self._reads_heads:
            # a kept-alive connection waits on the poller, not in a thread's slot
            self.max_keepalived = _MAX_WAITING

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """gunicorn's warning that no connection can be kept alive holds with TLS only."""
        if cfg.is_ssl:
            super().check_config(cfg, log)

    # -- accepting -----------------------------------------------------------------------

    def accept(self, listener: Any) -> None:
        """Accept one connection: its head is read on the poller, or (at a stop, with
        TLS) by a pool thread; a late head ends at its deadline."""
        try:
            client, addr = self._clients.accept(listener)
        except OSError as exc:
            if exc.errno in RETRY_ACCEPT_ERRNOS:
                return
            raise
        self.nr_conns += 1
        conn = _Conn(self.cfg, client, addr, listener.getsockname())
        if not self._reads_heads or not self.alive or self._prior_knowledge(conn):
            self.enqueue_req(conn)
            return
        pace = getattr(client, "pace", None)
        conn.expires = pace.head_deadline if pace is not None else conn.since + 10.0
        self._young.append(conn)
        self._wait_for_head(conn)
        self._read_head(conn)

    def _prior_knowledge(self, conn: _Conn) -> bool:
        from gunicorn.http2 import negotiation

        return bool(negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def _busy(self) -> int:
        """Connections that hold or wait for a thread (young heads included)."""
        now = time.monotonic()
        young = self._young
        while young and (young[0] not in self._waiting or now - young[0].since >= _GRACE):
            young.popleft()
        return int(self.nr_conns) - len(self._waiting) + len(young)

    def _gate(self) -> None:
        """Accept while a thread is free (``worker_connections`` is the thread count)."""
        if self.alive:
            can = self._busy() < self.worker_connections
            if can != self._accepting:
                _GunicornThreadWorker.set_accept_enabled(self, can)

    # -- heads on the poller -------------------------------------------------------------

    def _wait_for_head(self, conn: _Conn) -> None:
        if len(self._waiting) >= _MAX_WAITING:
            oldest = next(iter(self._waiting))
            self._drop(oldest, "too many connections waiting for a request head", None)
        self._waiting[conn] = None
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: _Conn, _sock: Any) -> None:
        self._read_head(conn)

    def _read_head(self, conn: _Conn) -> None:
        """Read what the client sent; hand a ready head to the pool."""
        try:
            data = socket.socket.recv(conn.sock, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn, None, None)
            return
        if conn.kept and not conn.head:
            # a request begins on a kept-alive connection: from now on the head deadline
            # (counted from the previous response) applies, not the idle limit
            pace = getattr(conn.sock, "pace", None)
            if pace is not None:
                conn.expires = pace.head_deadline
        conn.head += data
        if _head_ready(conn.head, self._line_limit):
            self._release(conn)
        elif time.monotonic() >= conn.expires:
            self._expire(conn)

    def _release(self, conn: _Conn) -> None:
        """The head is in: the connection goes to a pool thread."""
        self._unwait(conn)
        conn.data_ready = True
        self.enqueue_req(conn)
        self._gate()

    def _unwait(self, conn: _Conn) -> None:
        del self._waiting[conn]
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: _Conn, reason: str | None, reply: bytes | None) -> None:
        """End a waiting connection: log ``reason`` (info), send ``reply``, close."""
        self._unwait(conn)
        self.nr_conns -= 1
        pace = getattr(conn.sock, "pace", None)
        if reason is not None and pace is not None:
            pace.cut(reason, reply)
        try:
            if reply:
                socket.socket.send(conn.sock, reply, socket.MSG_DONTWAIT)
        except OSError:
            pass
        conn.close()
        self._gate()

    def _expire(self, conn: _Conn) -> None:
        limit = current().header_timeout
        if conn.head:
            self._drop(conn, f"request head not complete within {limit:g}s (408)", REPLY_408)
        elif conn.kept:
            self._drop(conn, None, None)  # keep-alive over: gunicorn closes quietly too
        else:
            self._drop(conn, f"no request within {limit:g}s", None)

    def _expire_waiting(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._waiting if c.expires <= now]:
            self._expire(conn)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """gunicorn's, waking up in time for the next head deadline or grace end."""
        if self._waiting:
            now = time.monotonic()
            soonest = min(c.expires for c in self._waiting)
            if self._young:
                soonest = min(soonest, self._young[0].since + _GRACE)
            timeout = max(0.0, min(timeout, soonest - now))
        super().wait_for_and_dispatch_events(timeout)

    def murder_pending(self) -> None:
        """gunicorn's, then the heads past their deadlines; accepting follows the threads."""
        super().murder_pending()
        self._expire_waiting()
        self._gate()

    def finish_request(self, conn: Any, fs: Any) -> None:
        """gunicorn's; a kept-alive connection then waits for its next head on the poller,
        within ``keepalive`` and a fresh ``header_timeout``."""
        super().finish_request(conn, fs)
        if not (
            self._reads_heads
            and isinstance(conn, _Conn)
            and self.keepalived_conns
            and self.keepalived_conns[-1] is conn
        ):
            self._gate()
            return
        self.keepalived_conns.pop()
        self.poller.unregister(conn.sock)
        now = time.monotonic()
        pace: Pace | None = getattr(conn.sock, "pace", None)
        expires = conn.timeout
        if pace is not None:
            pace.start_head(now)
            expires = min(expires, pace.head_deadline)
        conn.kept, conn.since, conn.expires = True, now, expires
        self._wait_for_head(conn)
        self._gate()

    # -- serving -------------------------------------------------------------------------

    def run(self) -> None:
        """Serve with the client deadlines on the listeners (see ``accept``)."""
        self._clients = ClientLimit(
            self.sockets,
            float(self.cfg.timeout),
            tls=self.cfg.is_ssl,
            limits=current(),
            log=self.log,
        )
        super().run()

    def handle_request(self, req: Any, conn: Any) -> Any:
        """gunicorn's, once a declared body over ``max_body_size`` is refused (413)."""
        begin_body(req, conn.sock)
        return super().handle_request(req, conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept while a thread is free; when the whole server stops, first drain the
        listen queue, and give the connections waiting for a head a last moment.

        gunicorn's ``run()`` calls this with False once, when its main loop ends and
        before it waits for the connections it holds: the place to take the queued ones.
        """
        if self.alive:
            enabled = self._busy() < self.worker_connections
        elif not self._drained:
            self._drained = True
            self._linger_waiting()  # also when only this worker ends (max_requests)
            if self.stop_announced():
                _GunicornThreadWorker.set_accept_enabled(self, False)
                self.drain_backlog()
        _GunicornThreadWorker.set_accept_enabled(self, enabled)

    def _linger_waiting(self) -> None:
        """At a stop: heads already arriving keep their deadlines; the others get
        ``_STOP_LINGER`` seconds, as gunicorn gives its kept-alive connections."""
        end = time.monotonic() + _STOP_LINGER
        for conn in self._waiting:
            if not conn.head:
                conn.expires = min(conn.expires, end)

    def drain_backlog(self) -> None:
        """Accept queued connections whenever a thread is free, until the queue stays empty."""
        watch = self.backlog_watch()
        while (ready := watch.poll()) is not None:
            self.notify()
            if ready and self._busy() < self.worker_connections:
                for listener in ready:
                    # gunicorn's accept() ignores EAGAIN: a sibling was quicker.
                    self.accept(listener)
                continue
            # Finished requests come back through the method queue and free a thread.
            self.wait_for_and_dispatch_events(timeout=_IDLE_POLL_SECONDS)
            self.murder_keepalived()
            self.murder_pending()
