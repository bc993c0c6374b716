"""Resolve code, CLI and environment input into a :class:`Plan`: what would be served, how.

Precedence, per option: ``SERVEKIT_*`` environment > code or command line > defaults.
``PORT`` stands in for ``port`` and ``WEB_CONCURRENCY`` for ``workers`` when neither
the code nor a ``SERVEKIT_*`` variable sets them. Every value remembers its source.
"""

from __future__ import annotations

import difflib
import os
import warnings as _warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

from pydantic import ValidationError

from servekit.backends import ALIASES, REGISTRY, load_strategy
from servekit.backends.base import Strategy
from servekit.config import AutoConfig, StrategyConfig, parse_bind
from servekit.errors import ConfigError, DevServerWarning
from servekit.guards import detect_environment, is_loopback
from servekit.sizing import usable_cpus

__all__ = [
    "ENV_PREFIX",
    "Plan",
    "Setting",
    "all_options",
    "applies_to",
    "describe_source",
    "resolve",
]

ENV_PREFIX = "SERVEKIT_"

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
    "debug": False,
    "timeout": 30,
    "keepalive": 2,
    "max_requests": 0,
    "max_requests_jitter": 0,
    "forwarded_allow_ips": "127.0.0.1,::1",
    "gunicorn": {},
}


@dataclass(frozen=True)
class Setting:
    """One resolved option: its value and where it came from."""

    value: Any
    source: str


@dataclass(frozen=True)
class Plan:
    """Everything decided before serving; :func:`servekit.serve` runs it, ``explain`` prints it."""

    app: Any
    requested: str
    strategy: str
    config: StrategyConfig
    settings: dict[str, Setting]
    env: str
    env_reason: str
    cpus: int
    capacity: int | None
    capacity_text: str
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    dev_server_in_production: bool = field(default=False)

    @property
    def adapter(self) -> Strategy:
        """The strategy object that runs this plan."""
        return load_strategy(self.strategy)

    @property
    def server(self) -> str:
        """``"werkzeug"`` or ``"gunicorn"``."""
        return type(self.config).server

    @property
    def worker_class(self) -> str | None:
        """The gunicorn worker class (dotted path or gunicorn's short name)."""
        return self.adapter.worker_class

    @property
    def address(self) -> tuple[str, int] | str:
        """``(host, port)`` or a unix socket path."""
        bind = self.config.bind
        if bind is not None:
            return parse_bind(bind)
        assert self.config.host is not None and self.config.port is not None
        return self.config.host, self.config.port

    def url(self, port: int | None = None) -> str:
        """The URL a client would use (``port`` overrides, e.g. after binding port 0)."""
        address = self.address
        if isinstance(address, str):
            return f"unix:{address}"
        host, bound = address
        scheme = "https" if self.config.certfile else "http"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{bound if port is None else port}"

    def describe(self) -> dict[str, Any]:
        """The plan as plain data: what ``servekit explain --json`` prints."""
        return {
            "app": self.app if isinstance(self.app, str) or self.app is None else repr(self.app),
            "strategy": self.strategy,
            "requested_strategy": self.requested,
            "server": self.server,
            "worker_class": self.worker_class,
            "env": self.env,
            "env_reason": self.env_reason,
            "cpus": self.cpus,
            "url": self.url(),
            "options": {
                name: {"value": s.value, "source": s.source} for name, s in self.settings.items()
            },
            "capacity": self.capacity,
            "capacity_text": self.capacity_text,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
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


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe_source(option: str, source: str, value: Any) -> str:
    """How to show a value's origin: ``SERVEKIT_WORKERS='x'``, ``--workers 'x'``, ``workers='x'``."""
    if source == "cli":
        return f"--{option.replace('_', '-')} {value!r}"
    if source in ("code", "default"):
        return f"{option}={value!r}"
    return f"{source}={value!r}"


_MESSAGES: dict[str, Callable[[Any], str]] = {
    "int_parsing": lambda e: "is not a whole number",
    "int_type": lambda e: "is not a whole number",
    "int_from_float": lambda e: "is not a whole number",
    "bool_parsing": lambda e: "is not a boolean (use true/false, 1/0, yes/no, on/off)",
    "bool_type": lambda e: "is not a boolean",
    "string_type": lambda e: "is not a string",
    "greater_than_equal": lambda e: f"is below the minimum {e['ctx']['ge']}",
    "less_than_equal": lambda e: f"is above the maximum {e['ctx']['le']}",
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
    msg = f"option {option!r} ({describe_source(option, source, value)}): {value!r} {problem}"
    if first["type"] == "value_error":
        msg = f"option {option!r} ({describe_source(option, source, value)}): {problem}"
    return ConfigError(msg, option=option, source=source)


def _read_env(environ: Mapping[str, str], known: list[str]) -> dict[str, tuple[str, str]]:
    """``SERVEKIT_*`` variables as option -> (value, variable); empty values count as unset."""
    found: dict[str, tuple[str, str]] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or value.strip() == "":
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name != "strategy" and name not in known:
            choices = [ENV_PREFIX + o.upper() for o in [*known, "strategy"]]
            msg = f"unknown environment variable {var}{_suggest(var, choices)}"
            raise ConfigError(msg, option=None, source=var)
        found[name] = (value, var)
    return found


def _canonical_strategy(value: Any, source: str) -> str:
    if isinstance(value, str):
        name = value.strip().lower()
        name = ALIASES.get(name, name)
        if name in REGISTRY or name == "auto":
            return name
    names = ["auto", *REGISTRY, *ALIASES]
    hint = _suggest(str(value).strip().lower(), names) if isinstance(value, str) else ""
    msg = (
        f"option 'strategy' ({describe_source('strategy', source, value)}): unknown strategy "
        f"{value!r}{hint}; choose one of: {', '.join(names)}"
    )
    raise ConfigError(msg, option="strategy", source=source)


def _strategy_name_of(config: StrategyConfig) -> str:
    return type(config).name or "auto"


def resolve(
    app: Any = None,
    strategy: str | StrategyConfig | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    source: str = "code",
    cpus: int | None = None,
    enforce_guard: bool = True,
    **options: Any,
) -> Plan:
    """Resolve a config without serving it.

    Args:
        app: a WSGI callable, an import string, or ``None`` (``explain`` without an app).
        strategy: a strategy name or a config object such as ``GeventConfig(workers=4)``.
        environ: the environment to read (``os.environ`` when ``None``).
        source: how to label the given options: ``"code"`` or ``"cli"``.
        cpus: usable CPUs (detected when ``None``; for tests).
        enforce_guard: raise when ``guard=error`` refuses the dev server in production
            (``explain`` passes ``False`` and reports the refusal as a warning).
        **options: options by name; ``None`` means "not given".

    Returns:
        The plan: strategy, every option with its source, capacity, warnings.

    Raises:
        ConfigError: any input that cannot be served, with a message naming the
            option and, where it came from the environment, the variable.
    """
    env_map = os.environ if environ is None else environ
    known = all_options()

    given: dict[str, Any] = {}
    if isinstance(strategy, StrategyConfig):
        given.update(strategy.model_dump(exclude_unset=True, exclude_none=True))
        strategy = _strategy_name_of(strategy)
    for name, value in options.items():
        if name not in known:
            msg = f"unknown option {name!r}{_suggest(name, known)}"
            raise ConfigError(msg, option=name, source=source)
        if value is not None:
            given[name] = value

    raw: dict[str, Any] = dict(given)
    sources = {name: source for name in given}
    env_values = _read_env(env_map, known)
    for name, (value, var) in env_values.items():
        raw[name] = value
        sources[name] = var

    if "strategy" in raw:
        requested = _canonical_strategy(raw.pop("strategy"), sources["strategy"])
    elif strategy is not None:
        requested = _canonical_strategy(strategy, source)
        sources["strategy"] = source
    else:
        requested = "auto"
        sources["strategy"] = "default"

    # Decide the environment before "auto" can be resolved.
    env_value = raw.get("env")
    if env_value is not None:
        try:
            env = str(AutoConfig.model_validate({"env": env_value}).env)
        except ValidationError as exc:
            raise _validation_message(exc, sources, raw) from None
        env_reason = f"env={env} ({sources['env']})"
    else:
        env, env_reason = detect_environment(env_map)

    chosen = requested
    notes: list[str] = []
    if requested == "auto":
        chosen = "gthread" if env == "production" else "threaded"
        notes.append(f"strategy 'auto' resolved to {chosen!r} because env is {env} ({env_reason})")
    adapter = load_strategy(chosen)
    model = adapter.config

    if "port" not in raw and "bind" not in raw and env_map.get("PORT", "").strip():
        raw["port"] = env_map["PORT"].strip()
        sources["port"] = "PORT"
    if (
        "workers" not in raw
        and "workers" in model.model_fields
        and env_map.get("WEB_CONCURRENCY", "").strip()
    ):
        raw["workers"] = env_map["WEB_CONCURRENCY"].strip()
        sources["workers"] = "WEB_CONCURRENCY"

    # Options the strategy cannot take are errors ("auto": unused, with a note).
    auto_model = AutoConfig if requested == "auto" else model
    if requested == "auto":
        _check_unused_auto_options(raw, model, sources)
    for name in list(raw):
        if name in model.model_fields:
            continue
        if name in auto_model.model_fields:
            notes.append(
                f"option {name!r} ({describe_source(name, sources[name], raw[name])}) is not used by "
                f"{chosen!r}; it applies when auto resolves to 'gthread' in production"
            )
            del raw[name]
            continue
        strat_src = sources["strategy"]
        strat_shown = (
            ""
            if strat_src == "default"
            else f" ({describe_source('strategy', strat_src, requested)})"
        )
        msg = (
            f"option {name!r} ({describe_source(name, sources[name], raw[name])}) does not apply to "
            f"strategy {chosen!r}{strat_shown}; it applies to: {', '.join(applies_to(name))}"
        )
        raise ConfigError(msg, option=name, source=sources[name])

    for module, extra in adapter.requires:
        if find_spec(module) is None:
            msg = (
                f"option 'strategy' ({describe_source('strategy', sources['strategy'], requested)}): "
                f"strategy {chosen!r} needs the {module!r} package, which is not installed; "
                f"pip install 'servekit[{extra}]'"
            )
            raise ConfigError(msg, option="strategy", source=sources["strategy"])

    try:
        model.model_validate(raw)
    except ValidationError as exc:
        raise _validation_message(exc, sources, raw) from None

    usable = usable_cpus() if cpus is None else cpus
    defaults = {k: v for k, v in COMMON_DEFAULTS.items() if k in model.model_fields}
    defaults["log_format"] = "json" if env == "production" else "console"
    defaults.update(adapter.defaults(usable))
    if "bind" in raw:
        host_port = parse_bind(str(raw["bind"]).strip())
        for name in ("host", "port"):
            if name in raw:
                msg = (
                    f"option {name!r} ({describe_source(name, sources[name], raw[name])}) conflicts with "
                    f"option 'bind' ({describe_source('bind', sources['bind'], raw['bind'])}); give one"
                )
                raise ConfigError(msg, option=name, source=sources[name])
        if isinstance(host_port, tuple):
            raw["host"], raw["port"] = host_port
            sources["host"] = sources["port"] = "bind"
    full = dict(defaults)
    full.update(raw)
    full["env"] = env
    if "env" not in sources:
        sources["env"] = "detected"
    config = model.model_validate(full)
    settings = {
        name: Setting(getattr(config, name), sources.get(name, "default"))
        for name in model.model_fields
    }
    _check_common(config, sources)
    try:
        adapter.check(config)
    except ConfigError as exc:
        origin = sources.get(exc.option or "", "")
        if origin and origin not in ("code", "cli", "default"):
            raise ConfigError(
                f"{exc.message} (from {origin})", option=exc.option, source=origin
            ) from None
        raise
    if adapter.advice:
        notes.append(adapter.advice)

    warnings: list[str] = []
    dev_in_prod = config.server == "werkzeug" and env == "production"
    if dev_in_prod:
        if config.guard == "off":
            notes.append(
                f"guard is off ({describe_source('guard', sources['guard'], 'off')}): the development "
                "server runs in production without a warning"
            )
        else:
            text = (
                f"the werkzeug development server ({chosen!r}) was chosen for production "
                f"({env_reason}); it is not built for production traffic: use "
                "strategy 'gthread' (or 'gevent' for I/O-bound apps), e.g. SERVEKIT_STRATEGY=gthread"
            )
            if config.guard == "error":
                msg = f"refusing to start: {text} (guard=error, {describe_source('guard', sources['guard'], 'error')})"
                if enforce_guard:
                    raise ConfigError(msg, option="guard", source=sources["guard"])
                text = msg
            warnings.append(text)
            _warnings.warn(text, DevServerWarning, stacklevel=2)
    if config.reload and env == "production":
        warnings.append(
            "reload is on in production: it restarts the server whenever a file changes"
        )
    if app is not None:
        warnings.extend(adapter.app_warnings(app))

    return Plan(
        app=app,
        requested=requested,
        strategy=chosen,
        config=config,
        settings=settings,
        env=env,
        env_reason=env_reason,
        cpus=usable,
        capacity=adapter.capacity(config),
        capacity_text=adapter.capacity_text(config),
        warnings=tuple(warnings),
        notes=tuple(notes),
        dev_server_in_production=dev_in_prod,
    )


def _check_unused_auto_options(
    raw: dict[str, Any], model: type[StrategyConfig], sources: dict[str, str]
) -> None:
    """Validate the options ``auto`` leaves unused now: they apply in production.

    Without this, ``SERVEKIT_WORKERS=abc`` would pass in development and fail only
    once deployed.

    Raises:
        ConfigError: naming the option and where it came from.
    """
    unused = {
        name: value
        for name, value in raw.items()
        if name not in model.model_fields and name in AutoConfig.model_fields
    }
    if not unused:
        return
    try:
        config = AutoConfig.model_validate(unused)
    except ValidationError as exc:
        raise _validation_message(exc, sources, raw) from None
    if config.gunicorn:
        try:
            load_strategy("gthread").check(config)
        except ConfigError as exc:
            origin = sources.get("gunicorn", "")
            suffix = f" (from {origin})" if origin not in ("", "code", "cli", "default") else ""
            raise ConfigError(exc.message + suffix, option=exc.option, source=origin) from None


def _check_common(config: StrategyConfig, sources: dict[str, str]) -> None:
    """Checks that span options, shared by every strategy."""

    def shown(name: str) -> str:
        return describe_source(name, sources.get(name, "default"), getattr(config, name))

    debug = getattr(config, "debug", False)
    host = config.host or ""
    if debug and config.bind is None and not is_loopback(host):
        msg = (
            f"option 'debug' ({shown('debug')}) is refused on the non-loopback address "
            f"{host!r} ({shown('host')}): the werkzeug debugger lets anyone who reaches it "
            "run code; bind to 127.0.0.1 or turn debug off"
        )
        raise ConfigError(msg, option="debug", source=sources.get("debug"))
    if debug and config.bind is not None:
        address = parse_bind(config.bind)
        if isinstance(address, tuple) and not is_loopback(address[0]):
            msg = (
                f"option 'debug' ({shown('debug')}) is refused on the non-loopback address "
                f"{config.bind!r} ({shown('bind')}): the werkzeug debugger lets anyone who "
                "reaches it run code"
            )
            raise ConfigError(msg, option="debug", source=sources.get("debug"))
    if bool(config.certfile) != bool(config.keyfile):
        missing = "keyfile" if config.certfile else "certfile"
        other = "certfile" if missing == "keyfile" else "keyfile"
        msg = f"option {missing!r} is required with option {other!r} ({shown(other)}) for TLS"
        raise ConfigError(msg, option=missing, source=sources.get(other))
    for name in ("certfile", "keyfile"):
        path = getattr(config, name)
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
            raise ConfigError(msg, option=name, source=sources.get(name))
    if config.certfile and config.keyfile:
        problem_with = _tls_pair_problem(config.certfile, config.keyfile)
        if problem_with is not None:
            name, problem = problem_with
            msg = f"option {name!r} ({shown(name)}): {problem}"
            raise ConfigError(msg, option=name, source=sources.get(name))
    jitter = getattr(config, "max_requests_jitter", 0)
    if jitter and not getattr(config, "max_requests", 0):
        msg = (
            f"option 'max_requests_jitter' ({shown('max_requests_jitter')}) needs "
            "option 'max_requests' above 0"
        )
        raise ConfigError(
            msg, option="max_requests_jitter", source=sources.get("max_requests_jitter")
        )


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
