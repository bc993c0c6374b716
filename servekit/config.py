"""The typed description of every option, and one config model per strategy.

Each option is written once, as a pydantic field on one of the small mixins below.
A strategy's config model is the set of mixins it accepts, so "which options does
``gevent`` take?" is answered by the model itself, and the ``serve()`` keyword
arguments, the CLI flags, the ``SERVEKIT_*`` variables, ``explain`` and the README
reference all derive from these fields.

A field left at ``None`` means "not given"; the resolver fills it with the
strategy's default (some defaults, like ``workers``, depend on the CPUs available).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from servekit.addresses import check_host, parse_bind

__all__ = [
    "AutoConfig",
    "DevConfig",
    "EventletConfig",
    "GeventConfig",
    "GranianConfig",
    "GthreadConfig",
    "ProcessesConfig",
    "StrategyConfig",
    "SyncConfig",
    "ThreadedConfig",
    "TornadoConfig",
]

Env = Literal["development", "production"]
Guard = Literal["warn", "error", "off"]
LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


def _opt(default_doc: str, help: str, **constraints: Any) -> Any:
    """Declare one option: unset by default, documented, constrained."""
    return Field(
        default=None,
        description=help,
        json_schema_extra={"default_doc": default_doc},
        **constraints,
    )


class StrategyConfig(BaseModel):
    """Base of the per-strategy config models; holds the options every strategy takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: ClassVar[str] = ""
    server: ClassVar[Literal["werkzeug", "gunicorn", "granian"]] = "werkzeug"

    host: str | None = _opt("127.0.0.1", "Interface to listen on.", min_length=1, max_length=255)
    port: int | None = _opt(
        "8000 ($PORT if set)", "TCP port to listen on (0 picks a free one).", ge=0, le=65535
    )
    bind: str | None = _opt(
        "host:port",
        "Address as 'host:port', '[v6]:port' or 'unix:/path'; replaces host and port.",
        min_length=1,
    )
    backlog: int | None = _opt(
        "2048", "Maximum number of connections waiting to be accepted.", ge=1, le=65535
    )
    graceful_timeout: int | None = _opt(
        "30",
        "Seconds that requests in flight get to finish after SIGTERM/SIGINT.",
        ge=1,
        le=86400,
    )
    reload: bool | None = _opt("false", "Restart when the code changes (development only).")
    env: Env | None = _opt(
        "detected", "'development' or 'production'; detected from the deployment when unset."
    )
    guard: Guard | None = _opt(
        "warn", "What the dev server does in production: 'warn', 'error' (refuse) or 'off'."
    )
    log_format: LogFormat | None = _opt(
        "json in production, else console", "'console' (human) or 'json' (one object a line)."
    )
    log_level: LogLevel | None = _opt("info", "Least severe level that is logged.")
    access_log: bool | None = _opt("true", "Log one event per request.")
    certfile: str | None = _opt("none", "TLS certificate file (PEM); needs keyfile.", min_length=1)
    keyfile: str | None = _opt("none", "TLS private key file (PEM); needs certfile.", min_length=1)
    metrics: str | None = _opt(
        "off",
        "Address ('host:port' or 'unix:/path') of a listener of its own serving Prometheus "
        "metrics at /metrics and readiness at /ready (see README).",
        min_length=1,
    )
    access_log_fields: str | None = _opt(
        "none",
        "Request headers to add to each access log event, comma-separated (e.g. "
        "'x-request-id,x-b3-traceid'); each becomes a field named after the header.",
        min_length=1,
    )
    chdir: str | None = _opt(
        "none",
        "Directory to change to before the app is imported, in the master and every worker; "
        "relative certfile, keyfile and pythonpath entries are taken from there.",
        min_length=1,
    )
    pythonpath: str | None = _opt(
        "none",
        "More directories to import the app from, comma-separated; searched before the "
        "working directory, which is always on the import path.",
        min_length=1,
    )

    @field_validator("log_level", "env", "guard", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is not None:
            check_host(value)
        return value

    @field_validator("bind", "metrics")
    @classmethod
    def _check_bind(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bind(value)
        return value

    @field_validator("access_log_fields")
    @classmethod
    def _check_fields(cls, value: str | None) -> str | None:
        if value is None:
            return value
        names = [part.strip().lower() for part in value.split(",") if part.strip()]
        token = set("abcdefghijklmnopqrstuvwxyz0123456789-!#$%&'*+.^_`|~")
        for name in names:
            if not set(name) <= token:
                msg = f"{name!r} is not a header name"
                raise ValueError(msg)
        if not names:
            msg = "names no header"
            raise ValueError(msg)
        return ",".join(names)


class _Debug(BaseModel):
    debug: bool | None = _opt(
        "false", "werkzeug's interactive debugger (executes code: loopback addresses only)."
    )


class _Workers(BaseModel):
    workers: int | None = _opt(
        "from usable CPUs (see README)",
        "Worker processes ($WEB_CONCURRENCY is honoured when unset).",
        ge=1,
        le=1024,
    )


class _Proxies(BaseModel):
    forwarded_allow_ips: str | None = _opt(
        "127.0.0.1,::1",
        "Comma-separated proxy addresses trusted for X-Forwarded-* headers ('*': all).",
        min_length=1,
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_ips(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "*":
            return value
        for part in value.split(","):
            item = part.strip()
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                msg = f"{item!r} is not an IP address or network (or use '*')"
                raise ValueError(msg) from None
        return value


class _Threads(BaseModel):
    threads: int | None = _opt("4", "Threads per worker process.", ge=1, le=10000)


class _Connections(BaseModel):
    worker_connections: int | None = _opt(
        "1000", "Concurrent connections (greenlets) per worker process.", ge=1, le=100000
    )


class _Keepalive(BaseModel):
    keepalive: int | None = _opt(
        "2; 0 on gthread and granian",
        "Seconds to wait for the next request on a keep-alive connection (0: off). "
        "sync workers close each connection after its response; on gthread a kept-alive "
        "connection waits on the worker's poller, not in a thread; on granian it holds a "
        "thread's slot, and the value also bounds the time a client has to send a "
        "request's headers.",
        ge=0,
        le=3600,
    )


class _HeaderTimeout(BaseModel):
    header_timeout: float | None = _opt(
        "10",
        "Seconds a client has to send a whole request head (request line and headers), "
        "counted from the connection's accept or the previous response; a head that is "
        "late gets 408 (nothing sent yet, or on granian: a close). A deadline, not a "
        "silence limit.",
        gt=0,
        le=3600,
        allow_inf_nan=False,
    )


class _MaxBodySize(BaseModel):
    max_body_size: int | None = _opt(
        "1073741824 (1 GiB)",
        "Largest request body in bytes; a larger Content-Length gets 413 before the app "
        "runs, a chunked body once the app reads past it (0: no limit).",
        ge=0,
    )


class _ClientLimits(_HeaderTimeout, _MaxBodySize):
    body_min_rate: int | None = _opt(
        "1024",
        "Least request-body rate (bytes/s) once a body read has waited header_timeout "
        "seconds on the client in all; a slower client is disconnected (0: no minimum).",
        ge=0,
    )


class _Gunicorn(_Proxies):
    timeout: int | None = _opt(
        "30",
        "Seconds a silent worker may take before it is killed and replaced (0: never); "
        "also the deadline for the client to take each write of a response (sync: half).",
        ge=0,
        le=86400,
    )
    max_requests: int | None = _opt(
        "0", "Restart a worker after this many requests (0: never).", ge=0
    )
    max_requests_jitter: int | None = _opt(
        "0", "Random extra requests added to max_requests per worker.", ge=0
    )

    gunicorn: dict[str, Any] | None = _opt(
        "{}",
        'More gunicorn settings by gunicorn\'s own names, e.g. {"limit_request_line": 8190}; '
        "JSON in the environment and on the command line. Each key is checked against "
        "gunicorn's settings; the ones servekit sets itself are refused.",
    )

    @field_validator("gunicorn", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                msg = f"is not a JSON object ({exc.msg})"
                raise ValueError(msg) from None
            except RecursionError:
                msg = "is nested too deeply to be gunicorn settings"
                raise ValueError(msg) from None
            if not isinstance(value, dict):
                msg = "must be a JSON object of gunicorn setting names to values"
                raise ValueError(msg)
        if isinstance(value, dict) and _depth(value) > _MAX_JSON_DEPTH:
            msg = f"is nested more than {_MAX_JSON_DEPTH} levels deep; gunicorn settings are flat"
            raise ValueError(msg)
        return value


class DevConfig(_Debug, _Proxies, _ClientLimits, StrategyConfig):
    """werkzeug's development server, one request at a time."""

    name: ClassVar[str] = "dev"


class ThreadedConfig(_Debug, _Proxies, _ClientLimits, StrategyConfig):
    """werkzeug's development server, one thread per request."""

    name: ClassVar[str] = "threaded"


class ProcessesConfig(_Debug, _Proxies, _ClientLimits, _Workers, StrategyConfig):
    """werkzeug's development server, one forked process per request, ``workers`` at once."""

    name: ClassVar[str] = "processes"


class SyncConfig(_Gunicorn, _ClientLimits, _Workers, StrategyConfig):
    """gunicorn with sync workers: one request at a time per worker."""

    name: ClassVar[str] = "sync"
    server: ClassVar[Literal["werkzeug", "gunicorn", "granian"]] = "gunicorn"


class GthreadConfig(_Gunicorn, _ClientLimits, _Keepalive, _Threads, _Workers, StrategyConfig):
    """gunicorn with threaded workers: ``workers x threads`` requests at once."""

    name: ClassVar[str] = "gthread"
    server: ClassVar[Literal["werkzeug", "gunicorn", "granian"]] = "gunicorn"


class GeventConfig(_Gunicorn, _ClientLimits, _Keepalive, _Connections, _Workers, StrategyConfig):
    """gunicorn with gevent workers: ``workers x worker_connections`` greenlets."""

    name: ClassVar[str] = "gevent"
    server: ClassVar[Literal["werkzeug", "gunicorn", "granian"]] = "gunicorn"


class EventletConfig(_Gunicorn, _ClientLimits, _Keepalive, _Connections, _Workers, StrategyConfig):
    """gunicorn with servekit's eventlet worker: ``workers x worker_connections``."""

    name: ClassVar[str] = "eventlet"
    server: ClassVar[Literal["werkzeug", "gunicorn", "granian"]] = "gunicorn"


class TornadoConfig(_Gunicorn, _ClientLimits, _Keepalive, _Threads, _Workers, StrategyConfig):
    """gunicorn with servekit's tornado worker, the WSGI app on ``threads`` threads."""

    name: ClassVar[str] = "tornado"
    server: ClassVar[Literal["werkzeug", "gunicorn", "granian"]] = "gunicorn"


class AutoConfig(_Debug, _Gunicorn, _ClientLimits, _Keepalive, _Threads, _Workers, StrategyConfig):
    """``threaded`` in development, ``gthread`` in production.

    Options that only the production choice takes (``workers``, ``threads``,
    ``timeout`` ...) are accepted and reported as unused in development.
    """

    name: ClassVar[str] = "auto"


class GranianConfig(
    _Proxies, _HeaderTimeout, _MaxBodySize, _Keepalive, _Threads, _Workers, StrategyConfig
):
    """granian (a Rust HTTP server) with its WSGI interface: ``workers x threads``."""

    name: ClassVar[str] = "granian"
    server: ClassVar[Literal["werkzeug", "gunicorn", "granian"]] = "granian"
    # A production server: the common option `reload` is not one of its fields (a class
    # attribute of the same name removes the inherited field; `cfg.reload` reads None).
    reload: ClassVar[None] = None  # type: ignore[misc]


_MAX_JSON_DEPTH = 8


def _depth(value: Any, level: int = 0) -> int:
    """How deeply ``value`` nests (stops counting past the limit)."""
    if level > _MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
