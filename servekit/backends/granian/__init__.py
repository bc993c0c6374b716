"""granian (a Rust HTTP server) with its WSGI interface, embedded: strategy ``granian``.

Capacity is ``workers x threads``: granian's blocking threads run the WSGI app, and
servekit hands every worker one shared listening socket and caps each worker's
connections at its threads, so a burst spreads over the workers the way the stated
capacity says (``server.py``). Because that cap counts connections, a kept-alive
connection holds its slot while idle: ``keepalive`` is 0 (off) unless given.

The package, by role: ``runner`` (the run), ``server`` (granian's master: socket,
drain, metering), ``signals``, ``wsgi`` / ``environ`` / ``response`` / ``streams``
(servekit's WSGI layer beneath granian), ``logs``, ``metering``, and ``patches`` (every
private name of granian servekit relies on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from servekit.backends.base import Strategy
from servekit.config import GranianConfig, StrategyConfig

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["Granian"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Granian(Strategy):
    """granian's WSGI server: ``workers`` processes x ``threads`` blocking threads."""

    name: ClassVar[str] = "granian"
    config: ClassVar[type[StrategyConfig]] = GranianConfig
    server: ClassVar[str] = "granian"
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("granian", "granian"),)
    packages: ClassVar[tuple[str, ...]] = ("granian>=2.8,<2.9",)
    advice: ClassVar[str | None] = (
        "granian counts connections, not requests, against a worker's threads: with "
        "keepalive above 0 every kept-alive connection holds one of the workers x threads "
        "slots while it is open, and clients beyond that wait; granian has no request "
        "timeout (timeout) and no max_requests"
    )

    def defaults(self, cpus: int) -> dict[str, Any]:
        return {"workers": cpus, "threads": 4, "keepalive": 0}

    def capacity(self, cfg: StrategyConfig) -> int | None:
        workers: int = getattr(cfg, "workers")  # noqa: B009 - GranianConfig has it
        threads: int = getattr(cfg, "threads")  # noqa: B009
        return workers * threads

    def capacity_text(self, cfg: StrategyConfig) -> str:
        workers: int = getattr(cfg, "workers")  # noqa: B009
        threads: int = getattr(cfg, "threads")  # noqa: B009
        text = f"{_plural(workers, 'worker')} x {_plural(threads, 'thread')}"
        if getattr(cfg, "keepalive", 0):
            text += " (connections, kept-alive ones included)"
        return text

    def saturation_advice(self, cfg: StrategyConfig) -> str:
        return (
            "every blocking thread is busy and connections are queuing: add workers or "
            "threads, or replicas, or make requests faster"
            + (
                "; idle kept-alive connections count as busy"
                if getattr(cfg, "keepalive", 0)
                else ""
            )
        )

    def run(self, plan: Plan) -> int:
        from servekit.backends.granian.runner import serve_granian

        return serve_granian(plan)
