"""Binding the listening socket before any server starts.

servekit binds the socket itself and hands the file descriptor to werkzeug or
gunicorn. A port in use or a forbidden address is then a clear
:class:`~servekit.errors.ConfigError` before anything has started, instead of
werkzeug's ``sys.exit(1)`` or gunicorn's five retries.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from servekit.errors import ConfigError

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = [
    "BacklogWatch",
    "bind_listener",
    "check_tls_files",
    "close_gate",
    "has_queued",
    "release_listener",
]

UNIX_SOCKET_MODE = 0o660
#: socket files this process created: path -> inode (close_gate removes only those)
_OWN_UNIX_SOCKETS: dict[str, int] = {}


def _option(plan: Plan, default: str) -> tuple[str, str]:
    """The option to blame (``bind`` when it was given) and how to show where it came from."""
    from servekit.errors import describe_source

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
    _OWN_UNIX_SOCKETS[path] = os.lstat(path).st_ino
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


# -- closing the gate at shutdown ----------------------------------------------------
#
# Draining a listener means serving what the kernel already queued, then closing it.
# While clients keep connecting, the queue refills as fast as it is drained, and the
# connections still queued at close() are reset *after* their clients sent a request:
# lost requests. Shrinking the backlog (listen(0)) does not help either: a full queue
# makes Linux drop the last ACK of a handshake the client already considers complete.
# A socket filter that drops bare SYNs closes the gate without that hole: handshakes
# under way complete and queue, new ones are not answered (the client retransmits its
# SYN and, once the listener is closed, is refused: honest and retryable).

SO_ATTACH_FILTER = 26  # Linux; not exported by the socket module
# Classic BPF, run on the TCP header of each segment the listener receives:
#   ldb [13]            TCP flags
#   and #0x12           SYN | ACK
#   jeq #0x02, 0, 1     a bare SYN (a new connection)?
#   ret #0              yes: drop it
#   ret #0xffffffff     no: let it through (handshake ACKs, data)
_SYN_DROP = (
    (0x30, 0, 0, 13),
    (0x54, 0, 0, 0x12),
    (0x15, 0, 1, 0x02),
    (0x06, 0, 0, 0),
    (0x06, 0, 0, 0xFFFFFFFF),
)
#: how long a gated queue must stay empty before the listener may close: time for
#: handshakes still under way (their final ACK passes the gate) to land in the queue
GATE_SETTLE_SECONDS = 0.05


def _attach_syn_drop(sock: Any) -> None:
    code = b"".join(struct.pack("HBBI", *op) for op in _SYN_DROP)
    buffer = ctypes.create_string_buffer(code, len(code))
    program = struct.pack("@HP", len(_SYN_DROP), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)


def close_gate(sock: Any) -> bool:
    """Stop a listening socket from taking new connections, keeping the queued ones.

    The socket stays open and its accept queue intact, so what was queued can still
    be accepted and served. Every process sharing the socket is affected: call it
    only when the whole server stops.

    TCP (Linux): a filter drops new connections' SYNs; handshakes under way complete.
    Unix socket: its file is removed (if this process created it), so no client can
    reach the socket any more.

    Args:
        sock: a listening socket (anything with ``family``, ``setsockopt``, ``listen``).

    Returns:
        True when no new connection can queue any more; False when only the backlog
        could be shrunk, which narrows rather than closes the window in which a
        connection can queue behind the drain.
    """
    family = getattr(sock, "family", None)
    if family in (socket.AF_INET, socket.AF_INET6) and sys.platform.startswith("linux"):
        try:
            _attach_syn_drop(sock)
        except OSError:
            pass
        else:
            return True
    if family == socket.AF_UNIX and _remove_own_socket_file(sock):
        return True
    with contextlib.suppress(OSError):
        sock.listen(0)
    return False


def _remove_own_socket_file(sock: Any) -> bool:
    try:
        path = sock.getsockname()
        if not isinstance(path, str) or not path or path.startswith("\0"):
            return False
        status = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISSOCK(status.st_mode) or _OWN_UNIX_SOCKETS.get(path) != status.st_ino:
        return False  # replaced meanwhile: another server's now
    with contextlib.suppress(OSError):
        os.unlink(path)
        del _OWN_UNIX_SOCKETS[path]
        return True
    return False


def release_listener(sock: socket.socket) -> None:
    """Close a listener nothing served on, removing its unix socket file if servekit made it."""
    _remove_own_socket_file(sock)
    sock.close()


def has_queued(sock: Any) -> bool:
    """Whether a listening socket has a connection waiting to be accepted."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed, or a descriptor select() cannot take
        return False
    return bool(ready)


class BacklogWatch:
    """Follows gated listeners until their accept queues are drained for good.

    A queue counts as drained once it has stayed empty for ``settle`` seconds
    (:data:`GATE_SETTLE_SECONDS`), or when ``deadline`` (a ``time.monotonic()``
    value) has passed.
    """

    def __init__(
        self,
        listeners: Sequence[Any],
        deadline: float,
        settle: float = GATE_SETTLE_SECONDS,
    ) -> None:
        self.listeners = list(listeners)
        self.deadline = deadline
        self.settle = settle
        self._empty_since: float | None = None

    def poll(self) -> list[Any] | None:
        """The listeners with a connection queued now; ``None`` once drained or out of time.

        An empty list means "nothing queued yet, but not settled": look again shortly.
        """
        now = time.monotonic()
        if now >= self.deadline:
            return None
        ready = [sock for sock in self.listeners if has_queued(sock)]
        if ready:
            self._empty_since = None
            return ready
        if self._empty_since is None:
            self._empty_since = now
        if now - self._empty_since >= self.settle:
            return None
        return []


def check_tls_files(certfile: str | None, keyfile: str | None, shown: Callable[[str], str]) -> None:
    """Check the TLS pair as the servers will load it, before anything binds.

    Args:
        certfile: the ``certfile`` option's value.
        keyfile: the ``keyfile`` option's value.
        shown: how to show an option's value and source in a message.

    Raises:
        ConfigError: one of the pair is missing, unreadable, not PEM, encrypted, or
            the key does not belong to the certificate.
    """
    if bool(certfile) != bool(keyfile):
        missing = "keyfile" if certfile else "certfile"
        other = "certfile" if missing == "keyfile" else "keyfile"
        msg = f"option {missing!r} is required with option {other!r} ({shown(other)}) for TLS"
        raise ConfigError(msg, option=missing)
    for name, path in (("certfile", certfile), ("keyfile", keyfile)):
        if path is None:
            continue
        problem = None
        if not os.path.exists(path):
            problem = "does not exist"
        elif not os.path.isfile(path):
            problem = "is not a regular file"
        elif not os.access(path, os.R_OK):
            problem = "is not readable"
        if problem:
            msg = f"option {name!r} ({shown(name)}): the file {path!r} {problem}"
            raise ConfigError(msg, option=name)
    if certfile and keyfile:
        problem_with = _tls_pair_problem(certfile, keyfile)
        if problem_with is not None:
            name, problem = problem_with
            msg = f"option {name!r} ({shown(name)}): {problem}"
            raise ConfigError(msg, option=name)


def _tls_pair_problem(certfile: str, keyfile: str) -> tuple[str, str] | None:
    """Load the TLS pair as the servers will; return ``(option, problem)`` if it fails.

    Without this a bad pair surfaces only when the server starts: a traceback from
    werkzeug, and gunicorn workers that fail at boot and are replaced forever.
    """
    import ssl

    asked_for_password = []

    def no_password() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
        asked_for_password.append(True)
        msg = "encrypted key"
        raise ValueError(msg)

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=certfile)
    except (ssl.SSLError, OSError, ValueError):
        return "certfile", f"the file {certfile!r} holds no PEM certificate"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            certfile, keyfile, password=no_password
        )
    except (ssl.SSLError, OSError, ValueError) as exc:
        if asked_for_password:
            return "keyfile", f"the key in {keyfile!r} is encrypted; give an unencrypted key"
        if "KEY_VALUES_MISMATCH" in str(exc):
            return (
                "keyfile",
                f"the key in {keyfile!r} does not belong to the certificate in {certfile!r}",
            )
        return "keyfile", f"the file {keyfile!r} holds no PEM private key"
    return None
