"""The :class:`Plan`: a frozen description of what would be served, and how.

:func:`servekit.resolve` builds it (see :mod:`servekit.resolver`), ``servekit
explain`` prints it and :func:`servekit.serve` runs it. It holds no behaviour of
its own beyond looking up the strategy that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from servekit.addresses import parse_bind
from servekit.backends import load_strategy
from servekit.config import StrategyConfig

if TYPE_CHECKING:
    from servekit.backends.base import Strategy

__all__ = ["Plan", "Setting"]


@dataclass(frozen=True)
class Setting:
    """One resolved option: its value and where it came from."""

    value: Any
    source: str


@dataclass(frozen=True)
class Plan:
    """Everything decided before serving; :func:`servekit.serve` runs it, ``explain`` prints it."""

    app: Any
    requested: str
    strategy: str
    config: StrategyConfig
    settings: dict[str, Setting]
    env: str
    env_reason: str
    cpus: int
    capacity: int | None
    capacity_text: str
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    dev_server_in_production: bool = field(default=False)

    @property
    def adapter(self) -> Strategy:
        """The strategy object that runs this plan."""
        return load_strategy(self.strategy)

    @property
    def server(self) -> str:
        """``"werkzeug"``, ``"gunicorn"`` or ``"granian"``."""
        return type(self.config).server

    @property
    def worker_class(self) -> str | None:
        """The gunicorn worker class (dotted path or gunicorn's short name); ``None`` otherwise."""
        return self.adapter.worker_class

    @property
    def address(self) -> tuple[str, int] | str:
        """``(host, port)`` or a unix socket path."""
        bind = self.config.bind
        if bind is not None:
            return parse_bind(bind)
        assert self.config.host is not None and self.config.port is not None
        return self.config.host, self.config.port

    def url(self, port: int | None = None) -> str:
        """The URL a client would use (``port`` overrides, e.g. after binding port 0)."""
        address = self.address
        if isinstance(address, str):
            return f"unix:{address}"
        host, bound = address
        scheme = "https" if self.config.certfile else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{bound if port is None else port}"

    def describe(self) -> dict[str, Any]:
        """The plan as plain data: what ``servekit explain --json`` prints."""
        return {
            "app": self.app if isinstance(self.app, str) or self.app is None else repr(self.app),
            "strategy": self.strategy,
            "requested_strategy": self.requested,
            "server": self.server,
            "worker_class": self.worker_class,
            "env": self.env,
            "env_reason": self.env_reason,
            "cpus": self.cpus,
            "url": self.url(),
            "options": {
                name: {"value": s.value, "source": s.source} for name, s in self.settings.items()
            },
            "capacity": self.capacity,
            "capacity_text": self.capacity_text,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }
