"""``servekit tune``: measure an app on this machine and recommend how to serve it.

``tune(TuneSettings(app="myproject.wsgi:app"))`` probes the app under a roomy
gthread server, classifies it (CPU-bound, I/O-bound or mixed), runs the candidate
strategies side by side at sizes derived from the usable CPUs, the measured CPU
share and the memory budget, and recommends the one that serves the most within a
p99 target. Only loopback servers are started, every one is stopped, and the run
keeps to its time limit.

The names below are imported when first used, so that the ``servekit`` command,
which always builds the ``tune`` parser, does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servekit.tune.load import RequestSpec
    from servekit.tune.report import render_plan, render_text, to_json
    from servekit.tune.runner import TuneError, TunePlan, TuneResult, dry_run, make_plan, tune
    from servekit.tune.schema import SCHEMA, validate
    from servekit.tune.settings import TuneSettings

__all__ = [
    "SCHEMA",
    "RequestSpec",
    "TuneError",
    "TunePlan",
    "TuneResult",
    "TuneSettings",
    "dry_run",
    "make_plan",
    "render_plan",
    "render_text",
    "to_json",
    "tune",
    "validate",
]

_HOMES = {
    "RequestSpec": "load",
    "render_plan": "report",
    "render_text": "report",
    "to_json": "report",
    "TuneError": "runner",
    "TunePlan": "runner",
    "TuneResult": "runner",
    "dry_run": "runner",
    "make_plan": "runner",
    "tune": "runner",
    "SCHEMA": "schema",
    "validate": "schema",
    "TuneSettings": "settings",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        msg = f"module 'servekit.tune' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"servekit.tune.{_HOMES[name]}"), name)
