"""What a tune run is asked to do, checked: every bad value is a :class:`ConfigError`."""

from __future__ import annotations

import importlib.util
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servekit.backends import ALIASES, REGISTRY, load_strategy
from servekit.errors import ConfigError, suggest
from servekit.tune.load import RequestSpec

__all__ = [
    "DEFAULT_CANDIDATES",
    "MAX_BODY",
    "TuneSettings",
    "candidates",
    "installed",
    "parse_header",
    "parse_memory",
    "parse_strategies",
    "parse_url",
]

#: compared when ``--strategies`` is not given (those installed)
DEFAULT_CANDIDATES = ("sync", "gthread", "gevent", "granian")
#: ``--body`` is a small file: one request body, sent many times
MAX_BODY = 1 << 20
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class TuneSettings:
    """A tune run: the app, the requests, and its bounds.

    ``duration`` is the load each measurement point gets (each probe step half of
    it); ``time_limit`` bounds the whole run, servers started and stopped included.
    """

    app: Any
    request: RequestSpec = field(default_factory=RequestSpec)
    duration: float = 3.0
    time_limit: float = 60.0
    max_concurrency: int = 64
    strategies: tuple[str, ...] | None = None
    p99_ms: float | None = None
    memory: int | None = None
    chdir: str | None = None
    pythonpath: str | None = None

    def __post_init__(self) -> None:
        _positive("duration", self.duration, 0.2)
        _positive("time_limit", self.time_limit, 2.0)
        if self.duration > self.time_limit:
            msg = f"--duration {self.duration:g} is longer than --time-limit {self.time_limit:g}"
            raise ConfigError(msg, option="duration")
        if not 1 <= self.max_concurrency <= 1024:
            msg = f"--max-concurrency {self.max_concurrency!r}: expected 1 to 1024 connections"
            raise ConfigError(msg, option="max_concurrency")
        if self.p99_ms is not None:
            _positive("p99_ms", self.p99_ms, 0.01)
        if self.memory is not None and self.memory < 1 << 20:
            msg = f"--memory {self.memory!r} bytes: expected at least 1 MiB (e.g. '512M', '2G')"
            raise ConfigError(msg, option="memory")

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take before it counts as a timeout."""
        return min(30.0, max(1.0, self.time_limit / 4))


def _positive(option: str, value: float, least: float) -> None:
    if not value >= least:
        msg = f"--{option.replace('_', '-')} {value:g}: expected a number of at least {least:g}"
        raise ConfigError(msg, option=option)


def number(option: str, text: str, kind: type[float] | type[int] = float) -> float:
    """``text`` as a number, or a :class:`ConfigError` quoting it."""
    try:
        return kind(text.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        msg = f"--{option.replace('_', '-')} {text!r}: expected {what}"
        raise ConfigError(msg, option=option) from None


def parse_url(text: str) -> tuple[str, int]:
    """``/path`` or ``/path=WEIGHT`` -> (path, weight).

    A trailing ``=N`` is a weight only when what stands before it is a whole path:
    ``/search?page=2`` is a path, ``/search?page=2=3`` is that path with weight 3.

    Raises:
        ConfigError: not a path on the app, or a weight below 1.
    """
    path, weight = text.strip(), 1
    head, sep, tail = path.rpartition("=")
    if sep and tail.isdigit():
        _, question, query = head.partition("?")
        if not question or all("=" in pair for pair in query.split("&")):
            path, weight = head, int(tail)
    if not path.startswith("/") or any(c.isspace() for c in path):
        msg = (
            f"--url {text!r}: expected a path on the app such as '/' or '/api/items?id=1' "
            "(tune serves the app itself, on 127.0.0.1)"
        )
        raise ConfigError(msg, option="url")
    if weight < 1:
        msg = f"--url {text!r}: the weight after '=' must be at least 1"
        raise ConfigError(msg, option="url")
    return path, weight


def parse_memory(text: str) -> int:
    """``'512M'``, ``'2G'``, ``'1.5GiB'``, ``'1073741824'`` -> bytes (units are powers of 1024).

    Raises:
        ConfigError: anything else.
    """
    match = _MEMORY.fullmatch(text.strip())
    if match is None:
        msg = f"--memory {text!r}: expected a size such as '512M', '2G' or a number of bytes"
        raise ConfigError(msg, option="memory")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` -> (name, value).

    Raises:
        ConfigError: no colon, or a name that is not an HTTP token.
    """
    name, colon, value = text.partition(":")
    if not colon or not _TOKEN.fullmatch(name.strip()):
        msg = f"--header {text!r}: expected 'Name: value'"
        raise ConfigError(msg, option="header")
    return name.strip(), value.strip()


def parse_method(text: str) -> str:
    """An HTTP method, upper-cased.

    Raises:
        ConfigError: not an HTTP token.
    """
    if not _TOKEN.fullmatch(text.strip()):
        msg = f"--method {text!r}: expected an HTTP method such as GET or POST"
        raise ConfigError(msg, option="method")
    return text.strip().upper()


def read_body(path: str) -> tuple[bytes, str]:
    """The body file's bytes and a Content-Type guessed from its name.

    Raises:
        ConfigError: unreadable, or over 1 MiB.
    """
    try:
        body = Path(path).read_bytes()
    except OSError as exc:
        msg = f"--body {path!r}: cannot read it ({exc.strerror or exc})"
        raise ConfigError(msg, option="body") from None
    if len(body) > MAX_BODY:
        msg = f"--body {path!r}: {len(body)} bytes; tune sends a small body (at most 1 MiB)"
        raise ConfigError(msg, option="body")
    return body, mimetypes.guess_type(path)[0] or "application/octet-stream"


def parse_strategies(text: str) -> tuple[str, ...]:
    """``'sync,gevent'`` -> the canonical names, in order, without repeats.

    Raises:
        ConfigError: an unknown name, ``auto``, or an empty list.
    """
    names: list[str] = []
    for word in (w.strip().lower() for w in text.split(",")):
        if not word:
            continue
        name = ALIASES.get(word, word)
        if name == "auto":
            msg = "--strategies 'auto': tune compares real strategies (auto is gthread in production)"
            raise ConfigError(msg, option="strategies")
        if name not in REGISTRY:
            msg = f"--strategies: unknown strategy {word!r}{suggest(word, list(REGISTRY))}"
            raise ConfigError(msg, option="strategies")
        if name not in names:
            names.append(name)
    if not names:
        msg = f"--strategies {text!r}: expected names such as 'sync,gthread,gevent'"
        raise ConfigError(msg, option="strategies")
    return tuple(names)


def installed(name: str) -> bool:
    """Whether every module the strategy needs can be imported here."""
    return all(importlib.util.find_spec(module) is not None for module, _ in load_strategy(name).requires)


def candidates(settings: TuneSettings) -> tuple[list[str], list[str]]:
    """The strategies to try, and a note for each default one left out.

    Strategies named in ``--strategies`` are all tried (a missing package is then the
    usual error, raised when the trial is resolved); the defaults only if installed.
    """
    if settings.strategies is not None:
        return list(settings.strategies), []
    chosen, notes = [], []
    for name in DEFAULT_CANDIDATES:
        if name not in REGISTRY:
            continue
        if installed(name):
            chosen.append(name)
        else:
            extra = next((e for _, e in load_strategy(name).requires), name)
            notes.append(f"{name} not tried: not installed (pip install 'servekit[{extra}]')")
    return chosen, notes
