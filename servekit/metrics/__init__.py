"""Live capacity truth: the ``metrics`` option's counters, exporter and saturation events.

:func:`start` is called by the entry point when ``metrics`` is set, before the
backend runs; backends find the exporter with :func:`active` to meter the app
(:func:`servekit.metrics.counters.meter`), give each worker its slot, and report
their listeners, live workers and restarts. With ``metrics`` unset nothing here runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from servekit.metrics.counters import Counters, meter
from servekit.metrics.exporter import Exporter

if TYPE_CHECKING:
    from servekit.plan import Plan

__all__ = ["active", "start", "stop", "wrap"]

_active: Exporter | None = None
#: worker slots beyond the worker count: room for replacements booting while old ones drain
_SPARE_SLOTS = 4


def start(plan: Plan) -> Exporter:
    """Bind the ``metrics`` listener and start serving it.

    Raises:
        ConfigError: the address cannot be bound.
    """
    global _active
    cfg = plan.config
    address = str(cfg.metrics)
    sock = Exporter.bind(address)
    workers = int(getattr(cfg, "workers", 1) or 1)
    labels = {"strategy": plan.strategy, "worker_class": plan.worker_class or ""}
    exporter = Exporter(
        sock,
        Counters(2 * workers + _SPARE_SLOTS),
        labels,
        plan.capacity,
        plan.adapter.saturation_advice(cfg),
    )
    exporter.start()
    _active = exporter
    return exporter


def active() -> Exporter | None:
    """The running exporter, or ``None`` when ``metrics`` is off."""
    return _active


def stop() -> None:
    """Stop the exporter (after the server has stopped)."""
    global _active
    if _active is not None:
        _active.stop()
        _active = None


def wrap(app: Any) -> Any:
    """``app`` metered by the active exporter, or ``app`` itself when metrics are off."""
    exporter = _active
    if exporter is None:
        return app
    return meter(app, exporter.writer)
