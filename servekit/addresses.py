"""Listening addresses as the options give them: ``host:port``, ``[v6]:port``, ``unix:/path``."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["check_host", "parse_bind"]

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_host(host: str) -> None:
    """Raise ValueError unless ``host`` is an IP address or a valid host name.

    Without this a name such as ``..`` or a 64-character label reached the socket
    call and ended in a traceback from the IDNA codec.
    """
    name = host.strip("[]")
    try:
        ipaddress.ip_address(name)
        return
    except ValueError:
        pass
    labels = name.removesuffix(".").split(".")  # one trailing dot: the root
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        msg = (
            f"{host!r} is not an IP address or a host name (labels of 1-63 letters, "
            "digits and '-', dot-separated)"
        )
        raise ValueError(msg)


def parse_bind(value: str) -> tuple[str, int] | str:
    """Parse a ``bind`` value.

    Args:
        value: ``host:port``, ``[v6addr]:port`` or ``unix:/path``.

    Returns:
        ``(host, port)`` for TCP, or the socket path for a unix socket.

    Raises:
        ValueError: the value has none of those forms.
    """
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            msg = f"{value!r} names no socket path (expected 'unix:/path/to.sock')"
            raise ValueError(msg)
        return path
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            msg = f"{value!r} is not '[v6addr]:port'"
            raise ValueError(msg)
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            msg = f"{value!r} is not 'host:port' or 'unix:/path'"
            raise ValueError(msg)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        msg = f"{value!r} has no valid port (0-65535)"
        raise ValueError(msg)
    check_host(host)
    return host, int(port_text)
