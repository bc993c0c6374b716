"""Binding the listening socket before any server starts.

servekit binds the socket itself and hands the file descriptor to werkzeug or
gunicorn. A port in use or a forbidden address is then a clear
:class:`~servekit.errors.ConfigError` before anything has started, instead of
werkzeug's ``sys.exit(1)`` or gunicorn's five retries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from typing import TYPE_CHECKING

from servekit.errors import ConfigError

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["bind_listener"]

UNIX_SOCKET_MODE = 0o660


def _option(plan: Plan, default: str) -> tuple[str, str]:
    """The option to blame (``bind`` when it was given) and how to show where it came from."""
    from servekit.plan import describe_source

    name = "bind" if plan.config.bind is not None else default
    setting = plan.settings[name]
    return name, describe_source(name, setting.source, setting.value)


def _bind_unix(plan: Plan, path: str) -> socket.socket:
    name, where = _option(plan, "bind")
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            msg = f"option {name!r} ({where}): {path!r} exists and is not a socket"
            raise ConfigError(msg, option=name)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # a stale socket left by a server that died
        else:
            msg = f"option {name!r} ({where}): another server is listening on {path!r}"
            raise ConfigError(msg, option=name)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 ^ UNIX_SOCKET_MODE)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        msg = f"option {name!r} ({where}): cannot create socket {path!r}: {exc.strerror}"
        raise ConfigError(msg, option=name) from None
    finally:
        os.umask(old_umask)
    os.chmod(path, UNIX_SOCKET_MODE)
    return sock


def _bind_tcp(plan: Plan, host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        name, where = _option(plan, "host")
        msg = f"option {name!r} ({where}): cannot resolve {host!r}: {exc.strerror}"
        raise ConfigError(msg, option=name) from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            name, where = _option(plan, "port")
            msg = f"option {name!r} ({where}): {host}:{port} is already in use by another program"
        elif exc.errno == errno.EACCES:
            name, where = _option(plan, "port")
            msg = f"option {name!r} ({where}): permission denied for {host}:{port} (ports below 1024 need privileges)"
        else:
            name, where = _option(plan, "host")
            msg = f"option {name!r} ({where}): cannot listen on {host}:{port}: {exc.strerror}"
        raise ConfigError(msg, option=name) from None
    return sock


def bind_listener(plan: Plan) -> socket.socket:
    """Create, bind and listen on the plan's address.

    Returns:
        A listening, inheritable socket.

    Raises:
        ConfigError: the address is in use, forbidden or cannot be resolved.
    """
    address = plan.address
    sock = _bind_unix(plan, address) if isinstance(address, str) else _bind_tcp(plan, *address)
    backlog = plan.config.backlog
    sock.listen(2048 if backlog is None else backlog)
    sock.set_inheritable(True)
    return sock
