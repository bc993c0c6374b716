"""granian (a Rust HTTP server) with its WSGI interface, embedded: strategy ``granian``.

Capacity is ``workers x threads``: granian's blocking threads run the WSGI app, and
servekit hands every worker one shared listening socket and caps each worker's
connections at its threads, so a burst spreads over the workers the way the stated
capacity says (see ``runner.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from servekit.backends.base import Strategy
from servekit.config import GranianConfig, StrategyConfig
from servekit.errors import ConfigError

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["Granian"]


class Granian(Strategy):
    """granian's WSGI server: ``workers`` processes x ``threads`` blocking threads."""

    name: ClassVar[str] = "granian"
    config: ClassVar[type[StrategyConfig]] = GranianConfig
    server: ClassVar[str] = "granian"
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("granian", "granian"),)
    packages: ClassVar[tuple[str, ...]] = ("granian>=2.8,<2.9",)
    advice: ClassVar[str | None] = (
        "granian counts connections, not requests, against a worker's threads: an idle "
        "keep-alive client holds a thread until 'keepalive' ends, so keep it short"
    )

    def defaults(self, cpus: int) -> dict[str, Any]:
        return {"workers": cpus, "threads": 4}

    def capacity(self, cfg: StrategyConfig) -> int | None:
        workers: int = getattr(cfg, "workers")  # noqa: B009 - GranianConfig has it
        threads: int = getattr(cfg, "threads")  # noqa: B009
        return workers * threads

    def capacity_text(self, cfg: StrategyConfig) -> str:
        workers: int = getattr(cfg, "workers")  # noqa: B009
        threads: int = getattr(cfg, "threads")  # noqa: B009
        w = "worker" if workers == 1 else "workers"
        t = "thread" if threads == 1 else "threads"
        return f"{workers} {w} x {threads} {t}"

    def check(self, cfg: StrategyConfig) -> None:
        if cfg.metrics is not None:
            msg = (
                "option 'metrics' does not apply to strategy 'granian' yet; it applies to: "
                "dev, threaded, processes, sync, gthread, gevent, eventlet, tornado"
            )
            raise ConfigError(msg, option="metrics")
        if isinstance(cfg.bind, str) and cfg.bind.startswith("unix:"):
            msg = "option 'bind': strategy 'granian' serves TCP only in servekit (no unix sockets)"
            raise ConfigError(msg, option="bind")

    def saturation_advice(self, cfg: StrategyConfig) -> str:
        return "every blocking thread is busy: add workers or threads, or replicas"

    def run(self, plan: Plan) -> int:
        from servekit.backends.granian.runner import serve_granian

        return serve_granian(plan)
