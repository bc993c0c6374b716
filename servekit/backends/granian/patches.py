"""Every private name of granian that servekit relies on, and where it replaces one.

granian 2.8 has no public API for a socket of one's own, for signal handling that
survives a signal landing on a Rust thread, for logging set-up that leaves the app's
handlers alone, or for the Python glue around a WSGI call. servekit overrides or
replaces these private names; the ``granian`` extra pins ``granian>=2.8,<2.9`` and
``tests/test_granian.py`` checks that each one still exists with the shape used here.

The replacements are module attributes set in the master before any worker is forked
(granian looks them up when a worker starts, so the workers inherit them) and put back
when the server has stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["INSTANCE_ATTRIBUTES", "PRIVATE_NAMES", "installed"]

#: (module, attribute): replaced module attributes, then names used or overridden
PRIVATE_NAMES = (
    ("granian._signals", "set_sync_signals"),  # replaced: the worker's stop signals
    ("granian.server.mp", "_wsgi_call_wrap"),  # replaced: the per-request WSGI glue
    ("granian.server.mp", "configure_logging"),  # replaced: logging set-up in workers
    ("granian.server.common", "configure_logging"),  # replaced: logging set-up in the master
    ("granian._granian", "SocketHolder"),  # SocketHolder(fd, uds, backlog): our socket
    ("granian._granian", "WorkerSignal"),  # the worker's stop event
    ("granian.server.mp", "MPServer"),  # subclassed: the overrides below
    ("granian.server.mp.MPServer", "_init_shared_socket"),
    ("granian.server.mp.MPServer", "_drop_shared_socket"),
    ("granian.server.mp.MPServer", "_spawn_worker"),
    ("granian.server.common.AbstractServer", "_respawn_workers"),
    ("granian.server.common.AbstractServer", "_stop_workers"),
    ("granian.server.common.AbstractServer", "signal_handler_interrupt"),
    ("granian.server.common.AbstractServer", "_bind_addr_fmt"),
)
#: attributes a granian server object has from its construction that servekit sets or
#: reads (``_sso``, the worker's copy of the socket, is set by ``_init_shared_socket``)
INSTANCE_ATTRIBUTES = ("_ssp", "_shd", "_sfd", "wrks", "workers_kill_timeout")

_REPLACED = PRIVATE_NAMES[:4]


@contextlib.contextmanager
def installed(
    stop_event: Callable[[], Any],
    handler: Callable[[Callable[..., Any]], Callable[..., Any]],
    configure_logging: Callable[..., None],
) -> Iterator[None]:
    """Put servekit's replacements in place for the life of one server.

    Args:
        stop_event: returns the worker's ``WorkerSignal`` (granian's ``set_sync_signals``).
        handler: turns the loaded app into the per-request callable granian calls.
        configure_logging: stands in for granian's ``configure_logging``.
    """
    import importlib

    modules = {name: importlib.import_module(name) for name, _ in _REPLACED}
    saved = [(modules[name], attr, getattr(modules[name], attr)) for name, attr in _REPLACED]

    def call_wrap(callback: Callable[..., Any], scope_opts: Any, access_log_fmt: Any = None) -> Any:
        return handler(callback)

    replacements = (stop_event, call_wrap, configure_logging, configure_logging)
    for (module, attr, _), value in zip(saved, replacements, strict=True):
        setattr(module, attr, value)
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)
