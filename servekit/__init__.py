"""servekit: serve any WSGI app with one call, and say how many requests it can carry.

``serve(app, strategy=...)`` runs werkzeug's development server (``dev``,
``threaded``, ``processes``), an embedded gunicorn (``sync``, ``gthread``,
``gevent``, ``eventlet``, ``tornado``) or granian (``granian``), configured from code,
the command line and ``SERVEKIT_*`` environment variables.

Names are imported on first use (PEP 562), so ``import servekit`` in an app's
entrypoint costs almost nothing until ``serve()`` runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from servekit.errors import ConfigError, DevServerWarning

if TYPE_CHECKING:
    from servekit.config import (
        AutoConfig,
        DevConfig,
        EventletConfig,
        GeventConfig,
        GranianConfig,
        GthreadConfig,
        ProcessesConfig,
        StrategyConfig,
        SyncConfig,
        ThreadedConfig,
        TornadoConfig,
    )
    from servekit.plan import Plan, Setting
    from servekit.resolver import resolve
    from servekit.run import serve

__version__ = "0.1.0"

__all__ = [
    "AutoConfig",
    "ConfigError",
    "DevConfig",
    "DevServerWarning",
    "EventletConfig",
    "GeventConfig",
    "GranianConfig",
    "GthreadConfig",
    "Plan",
    "ProcessesConfig",
    "Setting",
    "StrategyConfig",
    "SyncConfig",
    "ThreadedConfig",
    "TornadoConfig",
    "__version__",
    "resolve",
    "serve",
]

_LAZY = {
    "AutoConfig": "servekit.config",
    "DevConfig": "servekit.config",
    "EventletConfig": "servekit.config",
    "GeventConfig": "servekit.config",
    "GranianConfig": "servekit.config",
    "GthreadConfig": "servekit.config",
    "ProcessesConfig": "servekit.config",
    "StrategyConfig": "servekit.config",
    "SyncConfig": "servekit.config",
    "ThreadedConfig": "servekit.config",
    "TornadoConfig": "servekit.config",
    "Plan": "servekit.plan",
    "Setting": "servekit.plan",
    "resolve": "servekit.resolver",
    "serve": "servekit.run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'servekit' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
