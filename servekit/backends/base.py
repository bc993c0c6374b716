"""The small interface every serving backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from servekit.config import StrategyConfig
    from servekit.plan import Plan

__all__ = ["Strategy"]


class Strategy(ABC):
    """One way of serving: its config model, defaults, capacity and runner.

    Subclasses import their server library inside :meth:`run` only, so that
    resolving or explaining a config never imports gunicorn, gevent or tornado.
    """

    name: ClassVar[str]
    config: ClassVar[type[StrategyConfig]]
    server: ClassVar[str]
    worker_class: ClassVar[str | None] = None
    #: top-level modules the strategy needs, with the servekit extra that brings them
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: the pip requirements of that extra (as in pyproject.toml; a test keeps them equal)
    packages: ClassVar[tuple[str, ...]] = ()
    #: a sentence ``explain`` shows whenever this strategy is chosen
    advice: ClassVar[str | None] = None

    def defaults(self, cpus: int) -> dict[str, Any]:
        """Defaults of the options this strategy adds to the common ones.

        Args:
            cpus: CPUs this process may really use (see :mod:`servekit.sizing`).
        """
        return {}

    def check(self, cfg: StrategyConfig) -> None:
        """Reject combinations of values this strategy cannot serve.

        Raises:
            ConfigError: naming the offending option.
        """
        return None

    def saturation_advice(self, cfg: StrategyConfig) -> str:
        """What to change when this config is saturated (the ``saturated`` event's advice)."""
        return (
            "every request slot is busy and connections are queuing: add workers or "
            "replicas, or make requests faster"
        )

    def app_warnings(self, app: object) -> list[str]:
        """Warnings about how this strategy will load ``app`` (e.g. monkey-patching)."""
        return []

    @abstractmethod
    def capacity(self, cfg: StrategyConfig) -> int | None:
        """How many requests this config serves at once (``None``: unbounded)."""

    @abstractmethod
    def capacity_text(self, cfg: StrategyConfig) -> str:
        """The capacity in words, e.g. ``"2 workers x 4 threads"``."""

    @abstractmethod
    def run(self, plan: Plan) -> int:
        """Serve until stopped; return the exit status (0 after a clean drain)."""
