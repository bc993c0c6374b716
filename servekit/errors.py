"""Exceptions and warnings that servekit raises, and the wording of where a value came from."""

from __future__ import annotations

import difflib
from typing import Any

__all__ = ["ConfigError", "DevServerWarning", "describe_source", "short_repr", "suggest"]


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


def describe_source(option: str, source: str, value: Any) -> str:
    """How to show a value's origin: ``SERVEKIT_WORKERS='x'``, ``--workers 'x'``, ``workers='x'``."""
    shown = short_repr(value)
    if source == "cli":
        return f"--{option.replace('_', '-')} {shown}"
    if source in ("code", "default"):
        return f"{option}={shown}"
    return f"{source}={shown}"


def short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut in the middle when it would swamp the message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...{text[-limit // 4 :]} ({len(text)} characters)"


def suggest(word: str, choices: list[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
