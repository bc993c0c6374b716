"""Production detection and the guards that keep the dev server out of production."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from servekit.addresses import parse_bind
from servekit.config import StrategyConfig
from servekit.errors import ConfigError, describe_source

__all__ = [
    "GuardVerdict",
    "check_debug_address",
    "detect_environment",
    "dev_server_guard",
    "is_loopback",
]

# Variables whose mere presence says "this runs on a deployment platform".
_PLATFORM_SIGNS = {
    "KUBERNETES_SERVICE_HOST": "Kubernetes",
    "DYNO": "Heroku",
    "K_SERVICE": "Cloud Run",
    "ECS_CONTAINER_METADATA_URI_V4": "AWS ECS",
    "FLY_APP_NAME": "Fly.io",
    "RENDER": "Render",
    "RAILWAY_ENVIRONMENT": "Railway",
}
# Variables that frameworks and teams use to name the environment.
_NAMED_ENV = ("FLASK_ENV", "APP_ENV", "ENVIRONMENT", "DJANGO_ENV")


def detect_environment(environ: Mapping[str, str]) -> tuple[str, str]:
    """Guess whether this is a production deployment when ``env`` is unset.

    Args:
        environ: the process environment.

    Returns:
        ``(env, reason)`` where env is ``"production"`` or ``"development"`` and
        reason says which sign decided it.
    """
    for var in _NAMED_ENV:
        value = environ.get(var, "").strip().lower()
        if value in ("production", "prod"):
            return "production", f"{var}={environ[var]}"
    for var, platform in _PLATFORM_SIGNS.items():
        if environ.get(var):
            return "production", f"{var} is set ({platform})"
    return "development", "no sign of a deployment"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_debug_address(debug: bool, host: str, bind: str | None, shown: Callable[[str], str]) -> None:
    """Refuse werkzeug's debugger on an address other machines can reach.

    Raises:
        ConfigError: ``debug`` is on and the address is not loopback.
    """
    if not debug:
        return
    if bind is None:
        if is_loopback(host):
            return
        msg = (
            f"option 'debug' ({shown('debug')}) is refused on the non-loopback address "
            f"{host!r} ({shown('host')}): the werkzeug debugger lets anyone who reaches it "
            "run code; bind to 127.0.0.1 or turn debug off"
        )
        raise ConfigError(msg, option="debug")
    address = parse_bind(bind)
    if isinstance(address, tuple) and not is_loopback(address[0]):
        msg = (
            f"option 'debug' ({shown('debug')}) is refused on the non-loopback address "
            f"{bind!r} ({shown('bind')}): the werkzeug debugger lets anyone who "
            "reaches it run code"
        )
        raise ConfigError(msg, option="debug")


@dataclass(frozen=True)
class GuardVerdict:
    """What the guards decided about a resolved config."""

    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    dev_server_in_production: bool = False


def dev_server_guard(
    config: StrategyConfig,
    strategy: str,
    env: str,
    env_reason: str,
    sources: Mapping[str, str],
    *,
    enforce: bool,
) -> GuardVerdict:
    """Decide what happens when a werkzeug strategy meets production, or other machines.

    Args:
        config: the resolved config.
        strategy: the strategy that will run.
        env: ``"production"`` or ``"development"``.
        env_reason: why ``env`` is what it is.
        sources: where each option came from.
        enforce: raise for ``guard=error`` (``explain`` reports the refusal instead).

    Raises:
        ConfigError: ``guard=error`` refuses the dev server in production.
    """
    if config.server != "werkzeug":
        return GuardVerdict()
    guard_source = sources.get("guard", "default")
    if env != "production":
        exposed = _exposed_address(config)
        if exposed is None or ("env" in sources and sources["env"] != "detected"):
            return GuardVerdict()
        return GuardVerdict(
            warnings=(
                f"the werkzeug development server ({strategy!r}) listens on {exposed!r}, which "
                "other machines can reach, and no env was set (no sign of a deployment was "
                "found: a plain Docker host or VM shows none); if this serves real traffic "
                "use strategy 'gthread' (SERVEKIT_STRATEGY=gthread); if it is development, "
                "set SERVEKIT_ENV=development to say so",
            )
        )
    if config.guard == "off":
        note = (
            f"guard is off ({describe_source('guard', guard_source, 'off')}): the development "
            "server runs in production without a warning"
        )
        return GuardVerdict(notes=(note,), dev_server_in_production=True)
    text = (
        f"the werkzeug development server ({strategy!r}) was chosen for production "
        f"({env_reason}); it is not built for production traffic: use "
        "strategy 'gthread' (or 'gevent' for I/O-bound apps), e.g. SERVEKIT_STRATEGY=gthread"
    )
    if config.guard == "error":
        text = (
            f"refusing to start: {text} (guard=error, "
            f"{describe_source('guard', guard_source, 'error')})"
        )
        if enforce:
            raise ConfigError(text, option="guard", source=guard_source)
    return GuardVerdict(warnings=(text,), dev_server_in_production=True)


def _exposed_address(config: StrategyConfig) -> str | None:
    """The non-loopback address the config listens on, or ``None``."""
    if config.bind is not None:
        address = parse_bind(config.bind)
        if isinstance(address, str):
            return None  # a unix socket: only this machine
        return None if is_loopback(address[0]) else config.bind
    host = config.host or ""
    return None if is_loopback(host) else host
