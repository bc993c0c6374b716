"""Production detection and the guards that keep the dev server out of production."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

__all__ = ["detect_environment", "is_loopback"]

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
