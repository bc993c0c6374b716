"""The public surface: __all__, py.typed, and what `import servekit` loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import servekit


def test_all_is_exactly_the_public_api() -> None:
    """__all__ is sorted and lists the contract's names."""
    assert servekit.__all__ == sorted(servekit.__all__)
    for name in (
        "serve",
        "ConfigError",
        "DevServerWarning",
        "resolve",
        "GeventConfig",
        "__version__",
    ):
        assert name in servekit.__all__
    for name in servekit.__all__:
        assert hasattr(servekit, name)


def test_config_error_is_value_error() -> None:
    """ConfigError is a ValueError; DevServerWarning is a UserWarning."""
    assert issubclass(servekit.ConfigError, ValueError)
    assert issubclass(servekit.DevServerWarning, UserWarning)


def test_py_typed_shipped() -> None:
    """The package is marked typed."""
    assert (Path(servekit.__file__).parent / "py.typed").exists()


def test_import_loads_no_server_library() -> None:
    """`import servekit` (and resolving a gunicorn plan) imports none of gunicorn, gevent, eventlet, tornado, werkzeug."""
    code = (
        "import sys, json, servekit\n"
        "servekit.resolve(None, 'gevent', environ={})\n"
        "servekit.resolve(None, 'tornado', environ={})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('gunicorn', 'gevent', 'eventlet', 'tornado', 'werkzeug'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
