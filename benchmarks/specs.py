"""The servers under test, as command lines: servekit, bare gunicorn, eventlet's own server.

Bare gunicorn gets exactly the settings servekit derives for the same strategy (read
from servekit's own mapping: ``keepalive``, ``backlog``, ``timeout``, ``graceful_timeout``,
``worker_connections`` ...), with the control socket off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.procs import ServerSpec

__all__ = [
    "APP",
    "ceiling_specs",
    "cpu_specs",
    "gunicorn_spec",
    "servekit_gunicorn_settings",
    "servekit_spec",
    "usable_cpus",
]

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
APP = "benchmarks.app:app"
THREADS = 4
CONNECTIONS = 1000


def usable_cpus() -> int:
    """CPUs this process may run on (what servekit's defaults are sized from, quota aside)."""
    return len(os.sched_getaffinity(0))


def _capacity(strategy: str, workers: int, threads: int, connections: int) -> int | None:
    if strategy == "dev":
        return 1
    if strategy == "threaded":
        return None
    if strategy in ("processes", "sync"):
        return workers
    if strategy in ("gthread", "tornado", "granian"):
        return workers * threads
    return workers * connections


def servekit_spec(
    strategy: str,
    *,
    workers: int | None = None,
    threads: int = THREADS,
    connections: int = CONNECTIONS,
    access_log: bool = False,
    key: str | None = None,
    label: str | None = None,
) -> ServerSpec:
    """``servekit run`` for ``strategy`` with explicit sizes (JSON log, as in production)."""
    argv = [str(BIN / "servekit"), "run", APP, "--strategy", strategy]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--log-format", "json"]
    argv.append("--access-log" if access_log else "--no-access-log")
    if strategy not in ("dev", "threaded"):
        assert workers is not None
        argv += ["--workers", str(workers)]
    if strategy in ("gthread", "tornado", "granian"):
        argv += ["--threads", str(threads)]
    if strategy in ("gevent", "eventlet"):
        argv += ["--worker-connections", str(connections)]
    procs = 1 if strategy in ("dev", "threaded") else int(workers or 1)
    return ServerSpec(
        key=key or f"servekit-{strategy}",
        label=label or strategy,
        argv=tuple(argv),
        capacity=_capacity(strategy, procs, threads, connections),
        processes=procs,
    )


#: gunicorn settings servekit sets that have a gunicorn CLI flag, and that flag
_FLAGS = {
    "threads": "--threads",
    "worker_connections": "--worker-connections",
    "keepalive": "--keep-alive",
    "backlog": "--backlog",
    "timeout": "--timeout",
    "graceful_timeout": "--graceful-timeout",
    "max_requests": "--max-requests",
    "max_requests_jitter": "--max-requests-jitter",
    "forwarded_allow_ips": "--forwarded-allow-ips",
    "loglevel": "--log-level",
}


def servekit_gunicorn_settings(
    strategy: str, workers: int, threads: int, connections: int
) -> dict[str, object]:
    """The gunicorn settings servekit itself derives for this strategy and these sizes.

    Read from servekit's own mapping, so the bare gunicorn command stays identical to
    what servekit runs when that mapping changes (e.g. ``keepalive`` per worker class).
    """
    from servekit.backends.gunicorn.app import gunicorn_settings
    from servekit.resolver import resolve

    options: dict[str, Any] = {"workers": workers}
    if strategy in ("gthread", "tornado"):
        options["threads"] = threads
    if strategy in ("gevent", "eventlet"):
        options["worker_connections"] = connections
    return dict(gunicorn_settings(resolve(APP, strategy, **options)))


def gunicorn_spec(
    worker_class: str,
    *,
    workers: int,
    threads: int = THREADS,
    connections: int = CONNECTIONS,
    access_log: bool = False,
    key: str | None = None,
    label: str | None = None,
) -> ServerSpec:
    """The bare ``gunicorn`` CLI with the settings servekit gives the same strategy."""
    argv = [str(BIN / "gunicorn"), APP, "-k", worker_class, "-w", str(workers)]
    argv += ["-b", "127.0.0.1:{port}", "--no-control-socket"]
    settings = servekit_gunicorn_settings(worker_class, workers, threads, connections)
    for name, flag in _FLAGS.items():
        value = settings.get(name)
        # gunicorn's own tornado worker has no thread pool: threads would do nothing.
        if value is not None and not (worker_class == "tornado" and name == "threads"):
            argv += [flag, str(value)]
    if access_log:
        argv += ["--access-logfile", "-"]
    capacity = _capacity(worker_class, workers, threads, connections)
    if worker_class == "tornado":
        capacity = workers  # the WSGI app runs on the event loop: one request per worker
    return ServerSpec(
        key=key or f"gunicorn-{worker_class}",
        label=label or f"gunicorn -k {worker_class}",
        argv=tuple(argv),
        capacity=capacity,
        processes=workers,
    )


def ceiling_specs(cpus: int) -> list[ServerSpec]:
    """All eight strategies at servekit's default sizes, plus the two references."""
    many = 2 * cpus + 1
    specs = [
        servekit_spec("dev"),
        servekit_spec("threaded"),
        servekit_spec("processes", workers=many),
        servekit_spec("sync", workers=many),
        servekit_spec("gthread", workers=cpus),
        servekit_spec("gevent", workers=cpus),
        servekit_spec("eventlet", workers=cpus),
        servekit_spec("tornado", workers=cpus),
        gunicorn_spec("tornado", workers=cpus, label="gunicorn -k tornado (bare)"),
        servekit_spec("eventlet", workers=1, key="servekit-eventlet-w1", label="eventlet w=1"),
        ServerSpec(
            key="eventlet-native",
            label="eventlet.wsgi.server (1 process)",
            argv=(str(BIN / "python"), "-m", "benchmarks.eventlet_native", "{port}"),
            capacity=1024,  # eventlet.wsgi.server's default max_size (green threads)
            processes=1,
        ),
    ]
    return specs


def cpu_specs(cpus: int) -> list[ServerSpec]:
    """The eight strategies at default sizes, plus threads alone (one gthread process)."""
    many = 2 * cpus + 1
    return [
        servekit_spec("dev"),
        servekit_spec("threaded"),
        servekit_spec("processes", workers=many),
        servekit_spec("sync", workers=many),
        servekit_spec("gthread", workers=cpus),
        servekit_spec(
            "gthread", workers=1, threads=8, key="servekit-gthread-1x8", label="gthread w=1 t=8"
        ),
        servekit_spec("gevent", workers=cpus),
        servekit_spec("eventlet", workers=cpus),
        servekit_spec("tornado", workers=cpus),
    ]
