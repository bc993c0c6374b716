"""Import strings (``"pkg.module:attr"``, ``"pkg.module:factory()"``) to WSGI callables."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from typing import Any

from servekit.errors import ConfigError

__all__ = ["WSGIApp", "check_app_spec", "load_app"]

WSGIApp = Callable[..., Any]


def _split(spec: str) -> tuple[str, str, bool]:
    module, sep, attr = spec.strip().partition(":")
    factory = attr.endswith("()")
    if factory:
        attr = attr[:-2]
    if (
        not sep
        or not module
        or not attr
        or not all(part.isidentifier() for part in [*module.split("."), *attr.split(".")])
    ):
        msg = (
            f"app {spec!r} is not an import string: expected 'package.module:attribute' "
            "or 'package.module:factory()'"
        )
        raise ConfigError(msg, option="app")
    return module, attr, factory


def _user_frame(exc: BaseException) -> str:
    """Where in the user's code an import failed: ``file:line``, innermost non-importlib frame."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno}"


def check_app_spec(spec: str) -> None:
    """Check an import string's form and that its top-level module exists, importing nothing.

    Used before forking workers that import the app themselves (after a gevent or
    eventlet monkey-patch), so a typo fails at once with exit status 2.

    Raises:
        ConfigError: the string is malformed or its top-level package cannot be found.
    """
    module, _, _ = _split(spec)
    top = module.split(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        msg = f"app {spec!r}: no module named {top!r} (is it on sys.path? the working directory is searched)"
        raise ConfigError(msg, option="app")


def load_app(app: str | WSGIApp) -> WSGIApp:
    """Return the WSGI callable for ``app``.

    Args:
        app: a WSGI callable (returned as is) or an import string.

    Raises:
        ConfigError: the module or attribute does not exist, the factory fails, the
            user's module raises while it is imported (the message carries the user's
            own exception and where it was raised), or the result is not callable.
    """
    if not isinstance(app, str):
        if not callable(app):
            msg = f"app {app!r} is not callable: a WSGI app is a callable (environ, start_response)"
            raise ConfigError(msg, option="app")
        return app
    module_name, attr, factory = _split(app)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            msg = f"app {app!r}: no module named {missing!r}"
            raise ConfigError(msg, option="app") from None
        msg = (
            f"app {app!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}{_user_frame(exc)}"
        )
        raise ConfigError(msg, option="app") from exc
    except Exception as exc:
        msg = (
            f"app {app!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}{_user_frame(exc)}"
        )
        raise ConfigError(msg, option="app") from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            msg = f"app {app!r}: module {module_name!r} has no attribute {attr!r}"
            raise ConfigError(msg, option="app") from None
    if factory:
        if not callable(target):
            msg = f"app {app!r}: {attr!r} is not callable, so it cannot be a factory"
            raise ConfigError(msg, option="app")
        try:
            target = target()
        except Exception as exc:
            msg = f"app {app!r}: the factory raised {type(exc).__name__}: {exc}{_user_frame(exc)}"
            raise ConfigError(msg, option="app") from exc
    if not callable(target):
        msg = f"app {app!r} is {type(target).__name__}, not a WSGI callable"
        raise ConfigError(msg, option="app")
    wsgi: WSGIApp = target
    return wsgi
