"""Resolve code, CLI and environment input into a :class:`~servekit.plan.Plan`.

Precedence, per option: ``SERVEKIT_*`` environment > code or command line > defaults.
``PORT`` stands in for ``port`` and ``WEB_CONCURRENCY`` for ``workers`` when neither
the code nor a ``SERVEKIT_*`` variable sets them. Every value remembers its source.

:func:`resolve` reads as its steps: gather the sources, decide the environment and
the strategy, drop or refuse options the strategy cannot take, validate, fill the
defaults, run the cross-option and strategy checks, then the guards.
"""

from __future__ import annotations

import os
import warnings as _warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

from servekit.addresses import parse_bind
from servekit.backends import ALIASES, REGISTRY, load_strategy
from servekit.backends.base import Strategy
from servekit.config import AutoConfig, StrategyConfig
from servekit.errors import ConfigError, DevServerWarning, describe_source, suggest
from servekit.guards import check_debug_address, detect_environment, dev_server_guard
from servekit.options import (
    COMMON_DEFAULTS,
    ENV_PREFIX,
    all_options,
    applies_to,
    read_env,
    validate,
)
from servekit.plan import Plan, Setting
from servekit.sizing import usable_cpus
from servekit.sockets import check_tls_files

__all__ = ["COMMON_DEFAULTS", "ENV_PREFIX", "all_options", "applies_to", "resolve"]

@dataclass
class _Inputs:
    """The raw values gathered from every source, each with where it came from."""

    raw: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)



def _gather(
    strategy: str | StrategyConfig | None,
    options: dict[str, Any],
    env_map: Mapping[str, str],
    source: str,
) -> tuple[_Inputs, str | None]:
    """Code/CLI options, then ``SERVEKIT_*`` over them; returns the inputs and the strategy name."""
    known = all_options()
    given: dict[str, Any] = {}
    if isinstance(strategy, StrategyConfig):
        given.update(strategy.model_dump(exclude_unset=True, exclude_none=True))
        strategy = type(strategy).name or "auto"
    for name, value in options.items():
        if name not in known:
            msg = f"unknown option {name!r}{suggest(name, known)}"
            raise ConfigError(msg, option=name, source=source)
        if value is not None:
            given[name] = value
    inputs = _Inputs(dict(given), {name: source for name in given})
    for name, (value, var) in read_env(env_map, known).items():
        inputs.raw[name] = value
        inputs.sources[name] = var
    return inputs, strategy


def _canonical_strategy(value: Any, source: str) -> str:
    if isinstance(value, str):
        name = value.strip().lower()
        name = ALIASES.get(name, name)
        if name in REGISTRY or name == "auto":
            return name
    names = ["auto", *REGISTRY, *ALIASES]
    hint = suggest(str(value).strip().lower(), names) if isinstance(value, str) else ""
    msg = (
        f"option 'strategy' ({describe_source('strategy', source, value)}): unknown strategy "
        f"{value!r}{hint}; choose one of: {', '.join(names)}"
    )
    raise ConfigError(msg, option="strategy", source=source)


def _requested_strategy(inputs: _Inputs, strategy: str | None, source: str) -> str:
    if "strategy" in inputs.raw:
        return _canonical_strategy(inputs.raw.pop("strategy"), inputs.sources["strategy"])
    if strategy is not None:
        inputs.sources["strategy"] = source
        return _canonical_strategy(strategy, source)
    inputs.sources["strategy"] = "default"
    return "auto"


def _decide_env(inputs: _Inputs, env_map: Mapping[str, str]) -> tuple[str, str]:
    """``(env, reason)``: the ``env`` option if given, else what the deployment shows."""
    value = inputs.raw.get("env")
    if value is None:
        inputs.sources["env"] = "detected"
        return detect_environment(env_map)
    env = str(validate(AutoConfig, {"env": value}, inputs.sources).env)
    return env, f"env={env} ({inputs.sources['env']})"


def _fallbacks(inputs: _Inputs, model: type[StrategyConfig], env_map: Mapping[str, str]) -> None:
    """``PORT`` and ``WEB_CONCURRENCY``, the platform conventions, when nothing else set them."""
    raw, sources = inputs.raw, inputs.sources
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


def _drop_inapplicable(
    inputs: _Inputs, requested: str, chosen: str, model: type[StrategyConfig], notes: list[str]
) -> None:
    """Refuse options the strategy cannot take; under ``auto``, note the production-only ones.

    Raises:
        ConfigError: naming the option, where it came from and the strategies it applies to.
    """
    raw, sources = inputs.raw, inputs.sources
    if requested == "auto":
        _check_unused_auto_options(inputs, model)
    for name in list(raw):
        if name in model.model_fields:
            continue
        shown = describe_source(name, sources[name], raw[name])
        if requested == "auto" and name in AutoConfig.model_fields:
            notes.append(
                f"option {name!r} ({shown}) is not used by {chosen!r}; it applies when auto "
                "resolves to 'gthread' in production"
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
            f"option {name!r} ({shown}) does not apply to strategy {chosen!r}{strat_shown}; "
            f"it applies to: {', '.join(applies_to(name))}"
        )
        raise ConfigError(msg, option=name, source=sources[name])


def _check_unused_auto_options(inputs: _Inputs, model: type[StrategyConfig]) -> None:
    """Validate the options ``auto`` leaves unused now: they apply in production.

    Without this, ``SERVEKIT_WORKERS=abc`` would pass in development and fail only
    once deployed.

    Raises:
        ConfigError: naming the option and where it came from.
    """
    unused = {
        name: value
        for name, value in inputs.raw.items()
        if name not in model.model_fields and name in AutoConfig.model_fields
    }
    if not unused:
        return
    config = validate(AutoConfig, unused, inputs.sources)
    if getattr(config, "gunicorn", None):
        _with_origin(lambda: load_strategy("gthread").check(config), inputs.sources)


def _check_installed(adapter: Strategy, chosen: str, requested: str, source: str) -> None:
    """Raises ConfigError when a package the strategy needs is not importable."""
    missing = [module for module, _ in adapter.requires if find_spec(module) is None]
    if not missing:
        return
    extra = adapter.requires[0][1]
    msg = (
        f"option 'strategy' ({describe_source('strategy', source, requested)}): "
        f"strategy {chosen!r} needs the {missing[0]!r} package, which is not installed; "
        f"{_install_hint(adapter.packages or tuple(missing), extra)}"
    )
    raise ConfigError(msg, option="strategy", source=source)


def _install_hint(packages: tuple[str, ...], extra: str) -> str:
    """A command that installs ``packages`` into the Python running servekit, as it runs now."""
    import shlex
    import sys

    command = " ".join([shlex.quote(sys.executable), "-m", "pip", "install"] + [
        shlex.quote(p) for p in packages
    ])
    return f"install it with: {command} (from a servekit checkout: pip install '.[{extra}]')"


def _with_origin(check: Callable[[], None], sources: dict[str, str]) -> None:
    """Run a check; name the environment variable in its error when the value came from one."""
    try:
        check()
    except ConfigError as exc:
        origin = sources.get(exc.option or "", "")
        if origin not in ("", "code", "cli", "default", "detected", "bind") and (
            origin not in exc.message
        ):
            raise ConfigError(
                f"{exc.message} (from {origin})", option=exc.option, source=origin
            ) from None
        raise ConfigError(exc.message, option=exc.option, source=origin or exc.source) from None


def _fill_defaults(
    inputs: _Inputs, model: type[StrategyConfig], adapter: Strategy, env: str, cpus: int
) -> dict[str, Any]:
    """Defaults under the given values; ``bind`` split into host and port."""
    raw, sources = inputs.raw, inputs.sources
    defaults = {k: v for k, v in COMMON_DEFAULTS.items() if k in model.model_fields}
    defaults["log_format"] = "json" if env == "production" else "console"
    defaults.update(adapter.defaults(cpus))
    if "bind" in raw:
        host_port = parse_bind(str(raw["bind"]).strip())
        for name in ("host", "port"):
            if name in raw:
                msg = (
                    f"option {name!r} ({describe_source(name, sources[name], raw[name])}) "
                    f"conflicts with option 'bind' "
                    f"({describe_source('bind', sources['bind'], raw['bind'])}); give one"
                )
                raise ConfigError(msg, option=name, source=sources[name])
        if isinstance(host_port, tuple):
            raw["host"], raw["port"] = host_port
            sources["host"] = sources["port"] = "bind"
    full = dict(defaults)
    full.update(raw)
    full["env"] = env
    return full


def _absolute_paths(config: StrategyConfig) -> StrategyConfig:
    """File options as absolute paths, relative ones taken from ``chdir`` (as gunicorn does)."""
    base = os.path.abspath(config.chdir) if config.chdir else os.getcwd()
    changes: dict[str, Any] = {}
    for name in ("certfile", "keyfile", "chdir"):
        value = getattr(config, name)
        if value and not os.path.isabs(value):
            root = os.getcwd() if name == "chdir" else base
            changes[name] = os.path.normpath(os.path.join(root, value))
    return config.model_copy(update=changes) if changes else config


def _check_common(config: StrategyConfig, sources: dict[str, str]) -> None:
    """Checks that span options, shared by every strategy."""

    def shown(name: str) -> str:
        return describe_source(name, sources.get(name, "default"), getattr(config, name))

    def checks() -> None:
        check_debug_address(
            bool(getattr(config, "debug", False)), config.host or "", config.bind, shown
        )
        if config.chdir is not None and not os.path.isdir(config.chdir):
            msg = f"option 'chdir' ({shown('chdir')}): {config.chdir!r} is not a directory"
            raise ConfigError(msg, option="chdir")
        base = config.chdir or os.getcwd()
        for entry in (config.pythonpath or "").split(","):
            if entry.strip() and not os.path.isdir(os.path.join(base, entry.strip())):
                msg = (
                    f"option 'pythonpath' ({shown('pythonpath')}): {entry.strip()!r} is not "
                    "a directory"
                )
                raise ConfigError(msg, option="pythonpath")
        check_tls_files(config.certfile, config.keyfile, shown)
        if config.metrics is not None:
            if config.reload:
                msg = (
                    f"option 'metrics' ({shown('metrics')}) does not go with option 'reload' "
                    f"({shown('reload')}): metrics are for a server that keeps running"
                )
                raise ConfigError(msg, option="metrics")
            app_address = config.bind or f"{config.host}:{config.port}"
            if parse_bind(config.metrics) == parse_bind(app_address) and config.port != 0:
                msg = (
                    f"option 'metrics' ({shown('metrics')}) is the app's own address: "
                    "give the metrics listener a port of its own"
                )
                raise ConfigError(msg, option="metrics")
        jitter = getattr(config, "max_requests_jitter", 0)
        if jitter and not getattr(config, "max_requests", 0):
            msg = (
                f"option 'max_requests_jitter' ({shown('max_requests_jitter')}) needs "
                "option 'max_requests' above 0"
            )
            raise ConfigError(msg, option="max_requests_jitter")

    try:
        checks()
    except ConfigError as exc:
        source = sources.get(exc.option or "")
        raise ConfigError(exc.message, option=exc.option, source=source) from None


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
    inputs, named = _gather(strategy, options, env_map, source)
    requested = _requested_strategy(inputs, named, source)
    env, env_reason = _decide_env(inputs, env_map)

    notes: list[str] = []
    chosen = requested
    if requested == "auto":
        chosen = "gthread" if env == "production" else "threaded"
        notes.append(f"strategy 'auto' resolved to {chosen!r} because env is {env} ({env_reason})")
    adapter = load_strategy(chosen)
    model = adapter.config
    _fallbacks(inputs, model, env_map)
    _drop_inapplicable(inputs, requested, chosen, model, notes)
    _check_installed(adapter, chosen, requested, inputs.sources["strategy"])
    validate(model, inputs.raw, inputs.sources)

    usable = usable_cpus() if cpus is None else cpus
    config = _absolute_paths(
        validate(model, _fill_defaults(inputs, model, adapter, env, usable), inputs.sources)
    )
    sources = inputs.sources
    _check_common(config, sources)
    _with_origin(lambda: adapter.check(config), sources)
    if adapter.advice:
        notes.append(adapter.advice)

    verdict = dev_server_guard(config, chosen, env, env_reason, sources, enforce=enforce_guard)
    notes.extend(verdict.notes)
    warnings = list(verdict.warnings)
    if verdict.dev_server_in_production and warnings:
        _warnings.warn(warnings[0], DevServerWarning, stacklevel=2)
    if config.reload and env == "production":
        warnings.append("reload is on in production: it restarts the server whenever a file changes")
    if app is not None:
        warnings.extend(adapter.app_warnings(app))

    return Plan(
        app=app,
        requested=requested,
        strategy=chosen,
        config=config,
        settings={
            name: Setting(getattr(config, name), sources.get(name, "default"))
            for name in model.model_fields
        },
        env=env,
        env_reason=env_reason,
        cpus=usable,
        capacity=adapter.capacity(config),
        capacity_text=adapter.capacity_text(config),
        warnings=tuple(warnings),
        notes=tuple(notes),
        dev_server_in_production=verdict.dev_server_in_production,
    )
