"""Exceptions and warnings that servekit raises."""

from __future__ import annotations

__all__ = ["ConfigError", "DevServerWarning"]


class ConfigError(ValueError):
    """A configuration that cannot be served, with a message a person can act on.

    ``option`` names the offending option (or ``None`` when the error is about the
    app or the strategy as a whole); ``source`` is where the value came from:
    ``"code"``, ``"cli"``, ``"default"`` or the name of an environment variable.
    """

    def __init__(self, message: str, *, option: str | None = None, source: str | None = None):
        super().__init__(message)
        self.message = message
        self.option = option
        self.source = source


class DevServerWarning(UserWarning):
    """The werkzeug development server was resolved for a production environment."""
