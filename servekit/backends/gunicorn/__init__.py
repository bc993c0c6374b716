"""Embedded gunicorn, one strategy per worker class: sync, gthread, gevent, eventlet, tornado."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from servekit.backends.base import Strategy
from servekit.config import (
    EventletConfig,
    GeventConfig,
    GthreadConfig,
    StrategyConfig,
    SyncConfig,
    TornadoConfig,
)
from servekit.errors import ConfigError

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["Eventlet", "Gevent", "Gthread", "Sync", "Tornado"]


def _workers(cfg: StrategyConfig) -> int:
    value: int = getattr(cfg, "workers")  # noqa: B009 - every gunicorn config has it
    return value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Gunicorn(Strategy):
    server: ClassVar[str] = "gunicorn"
    #: what "per worker" means in the capacity sentence, and the option that sets it
    per_worker: ClassVar[tuple[str, str] | None] = None

    def defaults(self, cpus: int) -> dict[str, Any]:
        return {"workers": cpus}

    def capacity(self, cfg: StrategyConfig) -> int | None:
        if self.per_worker is None:
            return _workers(cfg)
        per: int = getattr(cfg, self.per_worker[1])
        return _workers(cfg) * per

    def capacity_text(self, cfg: StrategyConfig) -> str:
        workers = _plural(_workers(cfg), "worker")
        if self.per_worker is None:
            return f"{workers}, one request at a time each"
        noun, option = self.per_worker
        return f"{workers} x {_plural(getattr(cfg, option), noun)}"

    def check(self, cfg: StrategyConfig) -> None:
        extra = getattr(cfg, "gunicorn", None)
        if extra:
            from servekit.backends.gunicorn.app import check_extra_settings

            check_extra_settings(extra)

    def run(self, plan: Plan) -> int:
        from servekit.backends.gunicorn.arbiter import serve_gunicorn

        return serve_gunicorn(plan)


class Sync(_Gunicorn):
    """servekit's sync worker (gunicorn's, plus the backlog drain): one request at a time."""

    name: ClassVar[str] = "sync"
    config: ClassVar[type[StrategyConfig]] = SyncConfig
    worker_class: ClassVar[str | None] = "servekit.backends.gunicorn.workers.sync.SyncWorker"
    advice: ClassVar[str | None] = (
        "a sync worker serves one connection at a time, for as long as its client is "
        "slow (up to header_timeout for a head, the body rate, timeout/2 per write): it "
        "needs a buffering proxy (e.g. nginx) in front where untrusted clients reach it"
    )

    def defaults(self, cpus: int) -> dict[str, Any]:
        return {"workers": 2 * cpus + 1}


class Gthread(_Gunicorn):
    """servekit's threaded worker (gunicorn's, with request heads read on its poller and
    the backlog drain); it accepts while a thread is free (see README)."""

    name: ClassVar[str] = "gthread"
    config: ClassVar[type[StrategyConfig]] = GthreadConfig
    worker_class: ClassVar[str | None] = "servekit.backends.gunicorn.workers.gthread.ThreadWorker"
    advice: ClassVar[str | None] = (
        "request heads are awaited without a thread, and a request waiting on its client "
        "(a slow upload or reader) gives its thread slot back, up to 256 per worker, "
        "within body_min_rate and timeout; with certfile each TLS connection holds a "
        "thread while its client is slow: terminate TLS in a proxy where untrusted "
        "clients reach it"
    )
    per_worker: ClassVar[tuple[str, str] | None] = ("thread", "threads")

    def check(self, cfg: StrategyConfig) -> None:
        super().check(cfg)
        if getattr(cfg, "keepalive", 0) and getattr(cfg, "certfile", None):
            msg = (
                "option 'keepalive': strategy 'gthread' keeps connections alive over plain "
                "HTTP only (with certfile each one would still close after its response); "
                "set keepalive=0, or use gevent, eventlet or tornado"
            )
            raise ConfigError(msg, option="keepalive")

    def defaults(self, cpus: int) -> dict[str, Any]:
        # off unless given: the figures in BENCHMARKS.md were measured without it
        return {"workers": cpus, "threads": 4, "keepalive": 0}


class _Cooperative(_Gunicorn):
    per_worker: ClassVar[tuple[str, str] | None] = ("connection", "worker_connections")

    def defaults(self, cpus: int) -> dict[str, Any]:
        return {"workers": cpus, "worker_connections": 1000}

    def capacity_text(self, cfg: StrategyConfig) -> str:
        return (
            super().capacity_text(cfg) + " (greenlets: concurrent only while requests wait on I/O)"
        )

    def app_warnings(self, app: object) -> list[str]:
        if isinstance(app, str):
            return []
        return [
            f"the app was given as an object, so it was imported before {self.name} "
            "monkey-patches the standard library in each worker: modules it imported "
            "(database drivers, HTTP clients) may keep blocking sockets and serialise "
            f"requests; pass an import string instead, e.g. serve('myproject.wsgi:app', "
            f"strategy={self.name!r}), so each worker imports the app after the patch"
        ]


class Gevent(_Cooperative):
    """servekit's gevent worker (gunicorn's, plus the backlog drain)."""

    name: ClassVar[str] = "gevent"
    config: ClassVar[type[StrategyConfig]] = GeventConfig
    worker_class: ClassVar[str | None] = "servekit.backends.gunicorn.workers.gevent.GeventWorker"
    requires: ClassVar[tuple[tuple[str, str], ...]] = (
        ("gevent", "gevent"),
        ("packaging", "gevent"),
    )
    packages: ClassVar[tuple[str, ...]] = ("gevent>=24.10.1", "packaging>=23")


class Eventlet(_Cooperative):
    """servekit's own eventlet worker (gunicorn >= 26 has none)."""

    name: ClassVar[str] = "eventlet"
    config: ClassVar[type[StrategyConfig]] = EventletConfig
    worker_class: ClassVar[str | None] = "servekit.backends.gunicorn.workers.eventlet.EventletWorker"
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("eventlet", "eventlet"),)
    packages: ClassVar[tuple[str, ...]] = ("eventlet>=0.36",)
    advice: ClassVar[str | None] = (
        "eventlet is maintained in bugfix-only mode upstream; prefer 'gevent' for new projects"
    )


class Tornado(_Gunicorn):
    """servekit's tornado worker: the WSGI app runs on a pool of ``threads`` per worker."""

    name: ClassVar[str] = "tornado"
    config: ClassVar[type[StrategyConfig]] = TornadoConfig
    worker_class: ClassVar[str | None] = "servekit.backends.gunicorn.workers.tornado.TornadoWorker"
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("tornado", "tornado"),)
    packages: ClassVar[tuple[str, ...]] = ("tornado>=6.3",)
    per_worker: ClassVar[tuple[str, str] | None] = ("thread", "threads")
    advice: ClassVar[str | None] = (
        "request heads are read on the event loop, and a request waiting on its client "
        "(a slow upload or reader) gives its thread slot back, up to 256 per worker, "
        "within body_min_rate and timeout"
    )

    def defaults(self, cpus: int) -> dict[str, Any]:
        return {"workers": cpus, "threads": 4}
