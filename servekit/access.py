"""The fields of the ``request`` access event that every backend shares.

``client`` is the address a proxy setup can trust: the peer, unless the peer is a
trusted proxy (``forwarded_allow_ips``), in which case it is the first address of
``X-Forwarded-For`` that is not itself a trusted proxy, read from the right (the
entries to its left were written by whoever connected to that proxy, and may be
made up).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

__all__ = ["TrustedProxies", "access_fields", "header_fields"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The addresses ``forwarded_allow_ips`` names (``*``: every address)."""

    def __init__(self, spec: str | Sequence[str] | None) -> None:
        items = spec.split(",") if isinstance(spec, str) else list(spec or [])
        names = [item.strip() for item in items if item.strip()]
        self.everyone = "*" in names
        self.networks: list[Network] = []
        for name in names:
            if name != "*":
                try:
                    self.networks.append(ipaddress.ip_network(name, strict=False))
                except ValueError:
                    continue  # gunicorn's own setting may hold names servekit did not check

    def __contains__(self, address: object) -> bool:
        if self.everyone:
            return True
        if not isinstance(address, str):
            return False
        return _in_networks(address, tuple(self.networks))


@lru_cache(maxsize=256)
def _in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def _client(peer: str | None, forwarded_for: str | None, trusted: TrustedProxies) -> str | None:
    if not peer or not forwarded_for or peer not in trusted:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer


def header_fields(names: Sequence[str], environ: Mapping[str, Any]) -> dict[str, Any]:
    """The requested headers, each as a field named after it (``x-request-id``)."""
    return {name: environ.get("HTTP_" + name.upper().replace("-", "_")) for name in names}


def access_fields(
    environ: Mapping[str, Any], trusted: TrustedProxies, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """``protocol``, ``user_agent``, ``referer``, ``client`` and the ``extra`` headers."""
    peer = environ.get("REMOTE_ADDR")
    fields = {
        "protocol": environ.get("SERVER_PROTOCOL"),
        "user_agent": environ.get("HTTP_USER_AGENT"),
        "referer": environ.get("HTTP_REFERER"),
        "client": _client(peer, environ.get("HTTP_X_FORWARDED_FOR"), trusted),
    }
    if extra:
        fields.update(header_fields(extra, environ))
    return fields
