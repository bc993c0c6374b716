"""servekit: serve any WSGI app with one call, and say how many requests it can carry.

``serve(app, strategy=...)`` runs werkzeug's development server (``dev``,
``threaded``, ``processes``) or an embedded gunicorn (``sync``, ``gthread``,
``gevent``, ``eventlet``, ``tornado``), configured from code, the command line and
``SERVEKIT_*`` environment variables.
"""

from __future__ import annotations

from servekit.config import (
    AutoConfig,
    DevConfig,
    EventletConfig,
    GeventConfig,
    GthreadConfig,
    ProcessesConfig,
    StrategyConfig,
    SyncConfig,
    ThreadedConfig,
    TornadoConfig,
)
from servekit.errors import ConfigError, DevServerWarning
from servekit.plan import Plan, Setting, resolve
from servekit.run import serve

__version__ = "0.1.0"

__all__ = [
    "AutoConfig",
    "ConfigError",
    "DevConfig",
    "DevServerWarning",
    "EventletConfig",
    "GeventConfig",
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
