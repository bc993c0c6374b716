"""The options as a whole: their names, which strategies take them, how bad values are worded.

Each option is described once, as a field of the config models (:mod:`servekit.config`);
this module answers the questions that span the models, for the resolver, the CLI and
the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from servekit.backends import REGISTRY, load_strategy
from servekit.config import AutoConfig, StrategyConfig
from servekit.errors import ConfigError, describe_source, short_repr, suggest

__all__ = ["COMMON_DEFAULTS", "ENV_PREFIX", "all_options", "applies_to", "read_env", "validate"]

ENV_PREFIX = "SERVEKIT_"

#: defaults of the options every strategy (or every gunicorn strategy) shares
COMMON_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8000,
    "backlog": 2048,
    "graceful_timeout": 30,
    "reload": False,
    "guard": "warn",
    "log_level": "info",
    "access_log": True,
    "certfile": None,
    "keyfile": None,
    "chdir": None,
    "metrics": None,
    "access_log_fields": None,
    "pythonpath": None,
    "debug": False,
    "timeout": 30,
    "keepalive": 2,
    "header_timeout": 10.0,
    "body_min_rate": 1024,
    "max_body_size": 1 << 30,
    "max_requests": 0,
    "max_requests_jitter": 0,
    "forwarded_allow_ips": "127.0.0.1,::1",
    "gunicorn": {},
}


def _configs() -> dict[str, type[StrategyConfig]]:
    configs = {name: load_strategy(name).config for name in REGISTRY}
    configs["auto"] = AutoConfig
    return configs


def all_options() -> list[str]:
    """Every option name, in the order of the reference (common options first)."""
    names: list[str] = []
    for cfg in _configs().values():
        for name in cfg.model_fields:
            if name not in names:
                names.append(name)
    return names


def applies_to(option: str) -> list[str]:
    """The strategy names whose config takes ``option``."""
    return [name for name, cfg in _configs().items() if option in cfg.model_fields]


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "int_parsing": lambda e: "is not a whole number",
    "int_type": lambda e: "is not a whole number",
    "int_from_float": lambda e: "is not a whole number",
    "float_parsing": lambda e: "is not a number (seconds, e.g. 2.5)",
    "float_type": lambda e: "is not a number",
    "finite_number": lambda e: "is not a finite number",
    "greater_than": lambda e: f"is not above {e['ctx']['gt']:g}",
    "bool_parsing": lambda e: "is not a boolean (use true/false, 1/0, yes/no, on/off)",
    "bool_type": lambda e: "is not a boolean",
    "string_type": lambda e: "is not a string",
    "greater_than_equal": lambda e: f"is below the minimum {e['ctx']['ge']:g}",
    "less_than_equal": lambda e: f"is above the maximum {e['ctx']['le']:g}",
    "string_too_short": lambda e: "is empty",
    "string_too_long": lambda e: f"is longer than {e['ctx']['max_length']} characters",
    "literal_error": lambda e: f"is not one of {e['ctx']['expected']}",
}


def _validation_message(
    err: ValidationError, sources: dict[str, str], raw: dict[str, Any]
) -> ConfigError:
    first = err.errors()[0]
    option = str(first["loc"][0]) if first["loc"] else "?"
    source = sources.get(option, "code")
    value = raw.get(option, first.get("input"))
    describe = _MESSAGES.get(first["type"])
    if describe is not None:
        problem = describe(first)
    else:
        problem = str(first["msg"]).removeprefix("Value error, ")
    msg = f"option {option!r} ({describe_source(option, source, value)}): {short_repr(value)} {problem}"
    if first["type"] == "value_error":
        msg = f"option {option!r} ({describe_source(option, source, value)}): {problem}"
    return ConfigError(msg, option=option, source=source)


def validate(
    model: type[StrategyConfig], data: dict[str, Any], sources: dict[str, str]
) -> StrategyConfig:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _validation_message(exc, sources, data) from None


def read_env(environ: Mapping[str, str], known: list[str]) -> dict[str, tuple[str, str]]:
    """``SERVEKIT_*`` variables as option -> (value, variable); empty values count as unset."""
    found: dict[str, tuple[str, str]] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or value.strip() == "":
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name != "strategy" and name not in known:
            choices = [ENV_PREFIX + o.upper() for o in [*known, "strategy"]]
            msg = f"unknown environment variable {var}{suggest(var, choices)}"
            raise ConfigError(msg, option=None, source=var)
        found[name] = (value, var)
    return found
