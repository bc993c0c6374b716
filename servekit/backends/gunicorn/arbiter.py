"""servekit's gunicorn arbiter: the master process, and :func:`serve_gunicorn` that runs it.

* a forked worker leaves through ``sys.exit``; unwinding would run the code after
  ``serve()`` in every worker. Workers end with ``os._exit`` instead.
* SIGINT drains like SIGTERM (gunicorn's SIGINT is a quick shutdown).
* a graceful stop loses no queued connection: the master closes the listeners'
  gate and tells the workers (:mod:`servekit.backends.gunicorn.workers.drain`),
  which serve what the kernel had queued before they exit.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import TYPE_CHECKING, Any

from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from servekit.backends.gunicorn.app import Application
from servekit.backends.gunicorn.boot import BootFailure, BootReport
from servekit.backends.gunicorn.log import GunicornLogger
from servekit.backends.gunicorn.metering import ArbiterMetering, describe_end
from servekit.backends.gunicorn.workers import drain
from servekit.errors import ConfigError
from servekit.sockets import bind_listener, close_gate, has_queued, release_listener

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["serve_gunicorn"]


_NO_LISTENERS: list[Any] = []
#: workers the master may start during a graceful stop to serve a queue nobody drains
_MAX_DRAIN_WORKERS = 2


#: workers that may end before any has loaded the app, before the server gives up
MAX_BOOT_DEATHS = 3


class _Arbiter(Arbiter):  # type: ignore[misc]
    _boot_deaths = 0
    _stopping = False
    _last_death = ""
    cfg_app = ""
    cfg_module = ""
    boot_report: BootReport
    metering: ArbiterMetering
    boot_failure: BootFailure
    on_first_boot: Any
    LISTENERS: list[Any]
    _held_listeners: list[Any] = []  # noqa: RUF012 - replaced per instance in stop()
    _drain_workers = 0

    def wait_for_signals(self, timeout: float = 1.0) -> list[int]:
        if self.boot_failure.poll() is not None:
            raise HaltServer("App failed to load.", self.APP_LOAD_ERROR)
        if self.boot_report.done:
            return list(super().wait_for_signals(timeout))
        signals = list(super().wait_for_signals(min(timeout, 0.02)))
        if self.boot_report.poll():
            self.on_first_boot()
        return signals

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        if exit_status != self.APP_LOAD_ERROR or self.boot_failure.message is None:
            super().halt(reason, exit_status)
            return
        # servekit prints the worker's message once, as its own error line.
        self._stop_control_server()
        self.stop(graceful=False)
        if self.pidfile is not None:
            self.pidfile.unlink()
        sys.exit(exit_status)

    def handle_usr2(self) -> None:
        """Refuse gunicorn's binary upgrade: it would leave an orphaned second master.

        The new master would inherit a socket servekit bound, outside gunicorn's own
        fd hand-over, with neither master draining it. Restart the process instead.
        """
        self.log.warning(
            "SIGUSR2 (binary upgrade) is not supported by servekit and was ignored: "
            "restart the process (SIGTERM drains), or send SIGHUP to reload the workers"
        )

    def handle_int(self) -> None:
        self.handle_term()

    def stop(self, graceful: bool = True) -> None:
        self._stopping = True
        if not graceful:
            super().stop(graceful)
            return
        self.metering.draining()
        # Before gunicorn signals the workers: new connections are no longer answered
        # (the gate), and the workers, told that the whole server stops, serve what is
        # queued instead of leaving it to be reset.
        drain.announce_stop()
        held: list[Any] = list(self.LISTENERS)
        for listener in held:
            close_gate(listener)
        # gunicorn closes the master's listeners first. When every worker has already
        # given up its own (all recycling at once, or none spawned yet) that close is
        # the last one and resets what is queued; the master keeps them open until
        # its workers are gone, and sends a worker for what is left (reap_workers).
        self.LISTENERS = _NO_LISTENERS
        self._held_listeners = held
        try:
            super().stop(graceful)
        finally:
            self._held_listeners = []
            for listener in held:
                with contextlib.suppress(OSError):
                    listener.close()

    def reap_workers(self) -> None:
        held: list[Any] = getattr(self, "_held_listeners", [])
        before, ended = set(self.WORKERS), self.metering.peek(always=not self.boot_report.done)
        try:
            super().reap_workers()
        except HaltServer:
            if not held:
                raise
            # A drain worker that could not boot; the stop goes on regardless.
        finally:
            self.metering.reaped(before, ended)
        if not self._stopping and not self.boot_report.done:
            self._count_boot_deaths(before - set(self.WORKERS), ended)

        if (
            held
            and not self.WORKERS
            and self.boot_report.done  # the app loads, so a worker can serve
            and self._drain_workers < _MAX_DRAIN_WORKERS
            and any(has_queued(listener) for listener in held)
        ):
            self._drain_workers += 1
            self.log.info("Starting a worker to serve the connections still queued")
            self.LISTENERS = held
            try:
                self.spawn_worker()  # it boots knowing the server stops: it drains
            finally:
                self.LISTENERS = _NO_LISTENERS

    def _count_boot_deaths(self, dead: set[int], ended: dict[int, Any]) -> None:
        """Stop after workers keep ending before any has loaded the app.

        An import that calls ``os._exit`` or crashes the interpreter ends each worker
        without a word; gunicorn would replace them forever (19 a second).
        """
        for pid in dead:
            self._boot_deaths += 1
            self._last_death = describe_end(ended.get(pid))
        if self.boot_failure.poll() is not None:
            raise HaltServer("App failed to load.", self.APP_LOAD_ERROR)  # it said why
        if self._boot_deaths >= MAX_BOOT_DEATHS:
            self.boot_failure.message = (
                f"app {self.cfg_app!r}: {self._boot_deaths} workers ended before any had "
                f"loaded the app (the last {self._last_death}); run "
                f"'python -c \"import {self.cfg_module}\"' to see why"
            )
            raise HaltServer("App failed to load.", self.APP_LOAD_ERROR)

    def spawn_worker(self) -> Any:
        master = os.getpid()
        self.metering.before_spawn()
        try:
            pid = super().spawn_worker()
            self.metering.after_spawn(pid)
            return pid
        except SystemExit as exc:
            if os.getpid() == master:
                raise
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            if os.getpid() == master:
                raise
            code = 1
        # In a worker: leave now, never unwind into the caller of serve().
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def serve_gunicorn(plan: Plan) -> int:
    """Run an embedded gunicorn arbiter for ``plan``; return its exit status.

    Raises:
        ConfigError: the address cannot be bound or the app cannot be loaded.
    """
    from servekit.run import announce

    GunicornLogger.access_enabled = bool(plan.config.access_log)
    fields = plan.config.access_log_fields
    GunicornLogger.access_headers = tuple(fields.split(",")) if fields else ()
    listener = bind_listener(plan)
    port = None if isinstance(plan.address, str) else listener.getsockname()[1]
    failures = BootFailure()
    report = BootReport()
    try:
        app = Application(plan, listener.fileno(), failures, report.worker_booted)
        arbiter = _Arbiter(app)  # with preload_app, this imports the app
    except BaseException:
        release_listener(listener)
        raise
    listener.detach()  # gunicorn owns (and closes) the descriptor from here on
    drain.prepare()
    arbiter.boot_report = report
    arbiter.cfg_app = plan.app if isinstance(plan.app, str) else repr(plan.app)
    arbiter.cfg_module = arbiter.cfg_app.partition(":")[0]
    arbiter.metering = ArbiterMetering(arbiter)
    arbiter.boot_failure = failures
    report.arbiter = arbiter
    arbiter.on_first_boot = lambda: announce(plan, port)
    # Objects the master holds now (config, imported modules) are inherited by every
    # worker; keeping them out of the collector keeps their pages shared after the fork.
    gc.freeze()
    try:
        arbiter.run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0
    if code == Arbiter.APP_LOAD_ERROR:
        if failures.message is not None:
            raise ConfigError(failures.message.removeprefix("servekit: error: "), option="app")
        return 2
    return code
