"""The registry of serving strategies: name -> ``"module:attribute"``, loaded lazily.

Adding a strategy is one module with a :class:`~servekit.backends.base.Strategy`
subclass and one line here (plus its name in :data:`StrategyName`).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from servekit.backends.base import Strategy

__all__ = ["ALIASES", "REGISTRY", "StrategyName", "load_strategy"]

REGISTRY: dict[str, str] = {
    "dev": "servekit.backends.werkzeug:Dev",
    "threaded": "servekit.backends.werkzeug:Threaded",
    "processes": "servekit.backends.werkzeug:Processes",
    "sync": "servekit.backends.gunicorn:Sync",
    "gthread": "servekit.backends.gunicorn:Gthread",
    "gevent": "servekit.backends.gunicorn:Gevent",
    "eventlet": "servekit.backends.gunicorn:Eventlet",
    "tornado": "servekit.backends.gunicorn:Tornado",
    "granian": "servekit.backends.granian:Granian",
}
ALIASES: dict[str, str] = {"werkzeug": "dev"}

StrategyName = Literal[
    "auto",
    "dev",
    "werkzeug",
    "threaded",
    "processes",
    "sync",
    "gthread",
    "gevent",
    "eventlet",
    "tornado",
    "granian",
]


@cache
def load_strategy(name: str) -> Strategy:
    """The strategy registered under ``name`` (a canonical name, not an alias)."""
    module_name, _, attr = REGISTRY[name].partition(":")
    cls: type[Strategy] = getattr(importlib.import_module(module_name), attr)
    return cls()
