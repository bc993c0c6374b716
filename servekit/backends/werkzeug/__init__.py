"""werkzeug's development server: ``dev`` (one request at a time), ``threaded``, ``processes``.

werkzeug's ``run_simple`` stops on SIGTERM without waiting for requests in
flight. servekit builds the same server classes (``make_server``'s) on a socket it
bound itself, and on SIGTERM/SIGINT it stops accepting, serves the connections
the kernel already queued, waits for requests in flight up to
``graceful_timeout``, then exits 0. With ``reload`` it hands the loop to
werkzeug's reloader, as ``run_simple`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from servekit.backends.base import Strategy
from servekit.config import DevConfig, ProcessesConfig, StrategyConfig, ThreadedConfig

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["Dev", "Processes", "Threaded"]


class _Werkzeug(Strategy):
    server: ClassVar[str] = "werkzeug"
    advice: ClassVar[str | None] = (
        "the development server gives each connection a process or thread (dev: the only "
        "one) for as long as its client is slow (up to header_timeout for a head, the body "
        "rate, 10 s per write): it is not for untrusted clients"
    )

    def run(self, plan: Plan) -> int:
        from servekit.backends.werkzeug.server import serve_werkzeug

        return serve_werkzeug(plan)


class Dev(_Werkzeug):
    """``run_simple()``'s default: one request at a time."""

    name: ClassVar[str] = "dev"
    config: ClassVar[type[StrategyConfig]] = DevConfig

    def capacity(self, cfg: StrategyConfig) -> int | None:
        return 1

    def capacity_text(self, cfg: StrategyConfig) -> str:
        return "1 request at a time (single-threaded development server)"


class Threaded(_Werkzeug):
    """``run_simple(threaded=True)``: a new thread per request, no limit."""

    name: ClassVar[str] = "threaded"
    config: ClassVar[type[StrategyConfig]] = ThreadedConfig

    def capacity(self, cfg: StrategyConfig) -> int | None:
        return None

    def capacity_text(self, cfg: StrategyConfig) -> str:
        return "one new thread per request; development server"


class Processes(_Werkzeug):
    """``run_simple(processes=N)``: a forked process per request, at most N at once."""

    name: ClassVar[str] = "processes"
    config: ClassVar[type[StrategyConfig]] = ProcessesConfig

    def defaults(self, cpus: int) -> dict[str, Any]:
        return {"workers": 2 * cpus + 1}

    def capacity(self, cfg: StrategyConfig) -> int | None:
        workers: int = getattr(cfg, "workers")  # noqa: B009 - only ProcessesConfig has it
        return workers

    def capacity_text(self, cfg: StrategyConfig) -> str:
        return f"{self.capacity(cfg)} forked processes (development server)"
