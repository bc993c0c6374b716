"""gunicorn's threaded worker, with request heads read on its poller and the listen queue
served at shutdown.

Use it as ``worker_class = "servekit.backends.gunicorn.workers.gthread.ThreadWorker"``.

gunicorn hands every accepted connection to a pool thread, which then waits for the
request head: a client that trickles its head, or sends nothing, holds a thread (and one
of servekit's ``worker_connections = threads`` slots) until its deadline, so a handful of
such clients takes the server's whole capacity. Here the worker's own poller reads each
head without a thread: a connection goes to the pool once its head is complete, and
counts against the threads from then on (and for its first ``_GRACE`` seconds while it sent nothing, so that
a burst of new connections still spreads over the workers as the cap intends). The
deadlines are those of :class:`~.limits.Pace`: a head not complete ``header_timeout``
seconds after the accept, or after the previous response, gets ``408`` (a quiet close when
nothing came), and a kept-alive connection waits at most ``keepalive`` for its next
request. TLS connections and HTTP/2 prior knowledge keep gunicorn's way (the thread
reads the head, within the same deadlines).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker

from servekit.backends.gunicorn.metering import away_meter
from servekit.backends.gunicorn.workers.clients import ClientLimit, TimedClientSocket
from servekit.backends.gunicorn.workers.closing import ClosesOnPoller, recv_now
from servekit.backends.gunicorn.workers.drain import RETRY_ACCEPT_ERRNOS, StopClock
from servekit.backends.gunicorn.workers.heads import HeadConn
from servekit.backends.gunicorn.workers.limits import (
    REPLY_408,
    Pace,
    Refuses413,
    begin_body,
    current,
)
from servekit.backends.gunicorn.workers.slots import Slots

__all__ = ["ThreadWorker"]

_IDLE_POLL_SECONDS = 0.01
#: seconds a new connection counts against the threads while its head is still awaited
_GRACE = 0.01
#: seconds connections waiting for a head are kept once a graceful stop begins
_STOP_LINGER = 2.0
#: at most this many connections wait for their heads per worker; past it the oldest goes
_MAX_WAITING = 1000

class ThreadWorker(StopClock, Refuses413, ClosesOnPoller, _GunicornThreadWorker):  # type: ignore[misc]
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
        self._waiting: dict[HeadConn, bool] = {}
        #: new connections in ``_waiting``, oldest first, while they count as busy
        self._young: deque[HeadConn] = deque()
        self._reads_heads = not self.cfg.is_ssl
        #: the request slots (None with TLS: a thread then keeps its slot, as gunicorn's)
        self._slots: Slots | None = None
        if self._reads_heads:
            # a kept-alive connection waits on the poller, not in a thread's slot
            self.max_keepalived = _MAX_WAITING
            self._slots = Slots(max(1, int(self.cfg.threads)), self._wake_gate, meter=away_meter())

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
        conn = HeadConn(self.cfg, client, addr, listener.getsockname())
        if not self._reads_heads:
            self.enqueue_req(conn)
            return
        conn.closer = self._close_later
        if not self.alive or self._prior_knowledge(conn):
            self.enqueue_req(conn)
            return
        pace = getattr(client, "pace", None)
        conn.expires = pace.head_deadline if pace is not None else conn.since + 10.0
        self._young.append(conn)
        self._wait_for_head(conn)
        self._read_head(conn)

    def _prior_knowledge(self, conn: HeadConn) -> bool:
        from gunicorn.http2 import negotiation

        return bool(negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def _prune_young(self) -> None:
        now = time.monotonic()
        young = self._young
        while young and (young[0] not in self._waiting or now - young[0].since >= _GRACE):
            young.popleft()

    def _busy(self) -> int:
        """Connections that hold or wait for a thread (young heads included)."""
        self._prune_young()
        held = len(self._waiting) + len(self._closing)
        away = self._slots.away if self._slots is not None else 0
        # a young connection that sent nothing yet (one that did is a head under way)
        silent = sum(1 for conn in self._young if not conn.head)
        return int(self.nr_conns) - held - away + silent

    def _gate(self) -> None:
        """Accept while a thread is free (``worker_connections`` is the thread count)."""
        if self.alive:
            can = self._busy() < self.worker_connections
            if can != self._accepting:
                _GunicornThreadWorker.set_accept_enabled(self, can)

    # -- heads on the poller -------------------------------------------------------------

    def _wait_for_head(self, conn: HeadConn) -> None:
        if len(self._waiting) >= _MAX_WAITING:
            oldest = next(iter(self._waiting))
            self._drop(oldest, "too many connections waiting for a request head", None)
        self._waiting[conn] = True
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: HeadConn, _sock: Any) -> None:
        if conn in self._waiting:  # not dropped or released earlier in this batch
            self._read_head(conn)

    def _read_head(self, conn: HeadConn) -> None:
        """Read what the client sent; hand a ready head to the pool."""
        data = recv_now(conn.sock, 65536)
        if data is None:
            return
        if not data:
            self._drop(conn, None, None)
            return
        if conn.kept and not conn.head:
            # a request begins on a kept-alive connection: from now on the head deadline
            # (counted from the previous response) applies, not the idle limit
            pace = getattr(conn.sock, "pace", None)
            if pace is not None:
                conn.expires = pace.head_deadline
        if conn.add(data):
            self._release(conn)
        elif time.monotonic() >= conn.expires:
            self._expire(conn)

    def _release(self, conn: HeadConn) -> None:
        """The head is in: the connection goes to a pool thread."""
        self._unwait(conn)
        conn.data_ready = True
        self.enqueue_req(conn)
        self._gate()

    def _unwait(self, conn: HeadConn) -> bool:
        """Take ``conn`` off the waiting list and the poller; False if it was not on it."""
        if self._waiting.pop(conn, False) is False:
            return False
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        return True

    def _drop(self, conn: HeadConn, reason: str | None, reply: bytes | None) -> None:
        """End a waiting connection: log ``reason`` (info), send ``reply``, close."""
        if not self._unwait(conn):
            return
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

    def _expire(self, conn: HeadConn) -> None:
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
        if self._waiting or self._closing:
            now = time.monotonic()
            soonest = min(c.expires for c in (*self._waiting, *self._closing))
            if self.alive:
                self._prune_young()
                if self._young:
                    soonest = min(soonest, self._young[0].since + _GRACE)
            timeout = max(0.0, min(timeout, soonest - now))
        super().wait_for_and_dispatch_events(timeout)

    def murder_pending(self) -> None:
        """gunicorn's, then the heads past their deadlines; accepting follows the threads."""
        super().murder_pending()
        self._expire_waiting()
        self._expire_closing()
        self._gate()

    def finish_request(self, conn: Any, fs: Any) -> None:
        """gunicorn's; a kept-alive connection then waits for its next head on the poller,
        within ``keepalive`` and a fresh ``header_timeout``."""
        super().finish_request(conn, fs)
        if not (
            self._reads_heads
            and isinstance(conn, HeadConn)
            and self.keepalived_conns
            and self.keepalived_conns[-1] is conn
        ):
            self._gate()
            return
        self.keepalived_conns.pop()
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        now = time.monotonic()
        pace: Pace | None = getattr(conn.sock, "pace", None)
        expires = conn.timeout
        if pace is not None:
            pace.start_head(now)
            expires = min(expires, pace.head_deadline)
        conn.restart(now, expires)
        self._wait_for_head(conn)
        self._gate()

    def _keepalive_after(self, conn: Any, keepalive: Any) -> bool:
        """gunicorn's; then the next head on this connection (pipelined, or after a body
        the app left unread) is timed as a head, from the end of this response."""
        try:
            return bool(super()._keepalive_after(conn, keepalive))
        finally:
            pace = getattr(conn.sock, "pace", None)
            if pace is not None:
                pace.start_head()
                # bytes of that head already read ahead: late, it is a 408, not a silence
                pace.head_bytes = len(conn.parser.unreader.buf.getvalue())

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

    def get_thread_pool(self) -> Any:
        """gunicorn's pool, with room for the requests that wait on their clients
        without a slot (:mod:`.slots`)."""
        if self._slots is None:
            return super().get_thread_pool()
        return ThreadPoolExecutor(max_workers=self._slots.pool_size)

    def handle(self, conn: Any) -> Any:
        """gunicorn's, in one of the ``threads`` slots; waits on the client give it back."""
        slots = self._slots
        if slots is None:
            return super().handle(conn)
        slots.take()
        sock = conn.sock if isinstance(conn.sock, TimedClientSocket) else None
        if sock is not None:
            sock.slots = slots
        try:
            return super().handle(conn)
        finally:
            if sock is not None:
                sock.slots = None
            slots.give()

    def _wake_gate(self) -> None:
        """A thread gave its slot back to wait on its client (on that thread): the main
        loop looks at the threads again at once (it may have just stopped accepting)."""
        self.method_queue.defer(self._gate)

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
