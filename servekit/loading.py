"""Import strings (``"pkg.module:attr"``, ``"pkg.module:factory()"``, ``"pkg.module"``) to WSGI callables.

The app is found where users keep it: the working directory (after ``chdir``) and
the ``pythonpath`` directories go on the import path before anything is checked or
imported, in the master; forked workers inherit both.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from servekit.errors import ConfigError

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "WSGIApp",
    "check_app_spec",
    "failure_location",
    "load_app",
    "prepare_import_path",
]

WSGIApp = Callable[..., Any]

#: what ``MODULE`` alone means, tried in order (gunicorn's and Django's convention first)
DEFAULT_ATTRIBUTES = ("application", "app")

_SERVEKIT_DIR = os.path.dirname(os.path.abspath(__file__))
#: the directories :func:`prepare_import_path` added last, in search order
_ADDED: list[str] = []


def prepare_import_path(chdir: str | None, pythonpath: str | None) -> list[str]:
    """Change to ``chdir`` and put ``pythonpath`` and the working directory on ``sys.path``.

    Args:
        chdir: a directory to change to first (``None``: stay).
        pythonpath: comma-separated directories, relative ones taken from the new
            working directory; they go before it, as gunicorn puts them.

    Returns:
        The directories added, in search order (for error messages).
    """
    if chdir:
        os.chdir(chdir)
    cwd = os.getcwd()
    extra = [os.path.abspath(p.strip()) for p in (pythonpath or "").split(",") if p.strip()]
    wanted = [*extra, cwd]
    for path in reversed(wanted):
        while path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    _ADDED[:] = wanted
    return wanted


def _split(spec: str) -> tuple[str, str | None, bool]:
    module, sep, attr = spec.strip().partition(":")
    factory = attr.endswith("()")
    if factory:
        attr = attr[:-2]
    names = module.split(".") + (attr.split(".") if sep else [])
    if not module or (sep and not attr) or not all(part.isidentifier() for part in names):
        msg = (
            f"app {spec!r} is not an import string: expected 'package.module', "
            "'package.module:attribute' or 'package.module:factory()'"
        )
        raise ConfigError(msg, option="app")
    return module, (attr if sep else None), factory


def failure_location(exc: BaseException) -> tuple[str, int] | None:
    """Where in the user's code ``exc`` was raised: the file and line.

    A syntax error is located where the parser found it; anything else at the
    innermost frame that belongs neither to importlib nor to servekit.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno or 0
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename
        and not f.filename.startswith("<frozen")
        and not os.path.abspath(f.filename).startswith(_SERVEKIT_DIR + os.sep)
    ]
    if not frames:
        return None
    return frames[-1].filename, frames[-1].lineno or 0


def _describe_failure(exc: BaseException) -> str:
    where = failure_location(exc)
    text = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    at = f" at {where[0]}:{where[1]}" if where else ""
    return f"{type(exc).__name__}: {text}{at}"


def _searched() -> str:
    extra = [p for p in _ADDED if p != os.getcwd()]
    shown = f"the working directory {os.getcwd()}"
    if extra:
        shown += f", pythonpath {', '.join(extra)}"
    return f"looked in {shown} and the installed packages"


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
        msg = (
            f"app {spec!r}: no module named {top!r} ({_searched()}); run servekit from the "
            f"directory that holds {top!r}, or give option 'chdir' or 'pythonpath'"
        )
        raise ConfigError(msg, option="app")


def _import(spec: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            msg = f"app {spec!r}: no module named {missing!r} ({_searched()})"
            raise ConfigError(msg, option="app") from None
        msg = f"app {spec!r}: importing {module_name!r} failed: {_describe_failure(exc)}"
        raise ConfigError(msg, option="app") from exc
    except Exception as exc:
        msg = f"app {spec!r}: importing {module_name!r} failed: {_describe_failure(exc)}"
        raise ConfigError(msg, option="app") from exc
    except (SystemExit, KeyboardInterrupt) as exc:
        # An import that ends the process would otherwise end every worker at boot,
        # and the master would start new ones forever.
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else "raised KeyboardInterrupt"
        where = failure_location(exc)
        at = f" at {where[0]}:{where[1]}" if where else ""
        msg = f"app {spec!r}: importing {module_name!r} {what}{at}"
        raise ConfigError(msg, option="app") from exc


def _attribute(spec: str, module: Any, module_name: str, attr: str | None) -> Any:
    if attr is None:
        for name in DEFAULT_ATTRIBUTES:
            if hasattr(module, name):
                return getattr(module, name)
        msg = (
            f"app {spec!r}: module {module_name!r} has neither 'application' nor 'app'; "
            f"name the attribute: '{module_name}:NAME'"
        )
        raise ConfigError(msg, option="app")
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            msg = f"app {spec!r}: module {module_name!r} has no attribute {attr!r}"
            raise ConfigError(msg, option="app") from None
    return target


def load_app(app: str | WSGIApp) -> WSGIApp:
    """Return the WSGI callable for ``app``.

    Args:
        app: a WSGI callable (returned as is) or an import string; ``MODULE`` alone
            means ``MODULE:application``, then ``MODULE:app``.

    Raises:
        ConfigError: the module or attribute does not exist, the factory fails, the
            user's module raises while it is imported (the message carries the user's
            own exception and where it was raised; ``__cause__`` is that exception),
            or the result is not callable.
    """
    if not isinstance(app, str):
        if not callable(app):
            msg = f"app {app!r} is not callable: a WSGI app is a callable (environ, start_response)"
            raise ConfigError(msg, option="app")
        return app
    module_name, attr, factory = _split(app)
    if "" not in sys.path and "." not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    target = _attribute(app, _import(app, module_name), module_name, attr)
    if factory:
        if not callable(target):
            msg = f"app {app!r}: {attr!r} is not callable, so it cannot be a factory"
            raise ConfigError(msg, option="app")
        try:
            target = target()
        except Exception as exc:
            msg = f"app {app!r}: the factory raised {_describe_failure(exc)}"
            raise ConfigError(msg, option="app") from exc
    if not callable(target):
        msg = f"app {app!r} is {type(target).__name__}, not a WSGI callable"
        raise ConfigError(msg, option="app")
    wsgi: WSGIApp = target
    return wsgi
