"""Trials: each candidate served at its size and loaded in short interleaved slices.

The servers of a group (those that fit in memory together) run side by side; every
round gives each of them one slice at each load, in an order that rotates, so a
change in the machine's load falls on all candidates alike.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servekit.resolver import resolve
from servekit.testing import RunningServer, ServerStartError
from servekit.tune.measure import Cell, Clock, measure
from servekit.tune.servers import failure_line, serving
from servekit.tune.settings import TuneSettings
from servekit.tune.sizing import batches

__all__ = ["Trial", "TrialSchedule", "prepare", "run_trials", "schedule_trials"]

Progress = Callable[[str], None]
#: the shortest slice worth measuring, and the length a round aims at
_MIN_POINT = 0.5
_ROUND = 0.75
_WARM_UP = 0.3
#: start-up beyond the probe's (gevent's workers take longer), warm-up and stop, per trial
_STARTUP_FACTOR = 1.2
_STOP = 0.3


@dataclass
class Trial:
    """One candidate: its options, the capacity ``explain`` states for them, its points."""

    strategy: str
    options: dict[str, Any]
    capacity: int | None = None
    capacity_text: str = ""
    warnings: list[str] = field(default_factory=list)
    server: str = "gunicorn"
    cells: dict[int, Cell] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def levels(self) -> list[Cell]:
        """The measured points, by concurrency."""
        return [self.cells[c] for c in sorted(self.cells)]

    @property
    def label(self) -> str:
        """``sync workers=3``."""
        return " ".join([self.strategy, *(f"{k}={v}" for k, v in self.options.items())])

    @property
    def measured_capacity(self) -> int | None:
        """The most requests the server held at once under load (connections it had
        accepted; those waiting in the kernel's accept queue are not counted)."""
        return max((c.at_once for c in self.levels), default=None)


def prepare(settings: TuneSettings, strategy: str, options: dict[str, Any]) -> Trial:
    """Resolve the candidate as ``explain`` would, for its capacity and warnings.

    Raises:
        ConfigError: the strategy cannot take these options, or its package is missing.
    """
    extra: dict[str, Any] = {"chdir": settings.chdir, "pythonpath": settings.pythonpath}
    plan = resolve(settings.app, strategy, environ={}, enforce_guard=False, **extra, **options)
    return Trial(
        strategy, options, plan.capacity, plan.capacity_text, list(plan.warnings), plan.server
    )


@dataclass(frozen=True)
class TrialSchedule:
    """The loads every trial gets, for how long, in how many rounds."""

    levels: list[int]
    point_seconds: float
    rounds: int
    shortened: bool = False

    @property
    def slice_seconds(self) -> float:
        """One slice: a point's time split over the rounds."""
        return self.point_seconds / self.rounds


def schedule_trials(
    count: int, levels: list[int], duration: float, available: float, startup_s: float
) -> TrialSchedule | None:
    """Fit ``count`` trials at ``levels`` into ``available`` seconds (``None``: they do not fit).

    Each point gets ``duration`` seconds when there is time; otherwise less, and with
    less still only the higher load.
    """
    overhead = count * (_STARTUP_FACTOR * startup_s + _WARM_UP + _STOP)
    load = available - overhead
    point = min(duration, load / (count * len(levels))) if count else 0.0
    if point < _MIN_POINT and len(levels) > 1:
        levels = levels[-1:]
        point = min(duration, load / count)
    if point < _MIN_POINT / 2:
        return None
    rounds = max(1, min(3, math.floor(point / _ROUND)))
    return TrialSchedule(levels, point, rounds, shortened=point < duration - 1e-9)


def _start(
    stack: contextlib.ExitStack,
    settings: TuneSettings,
    trial: Trial,
    log_dir: Path,
    clock: Clock,
    warm_concurrency: int,
) -> RunningServer | None:
    if clock.left() < _MIN_POINT:
        trial.skipped = "not started: the time limit was reached"
        return None
    try:
        server = stack.enter_context(
            serving(settings, trial.strategy, trial.options, log_dir, clock.left())
        )
    except ServerStartError as error:
        trial.skipped = f"did not start: {failure_line(error)}"
        return None
    timeout = settings.request_timeout
    measure(server.pid, server.url, settings.request, warm_concurrency, _WARM_UP, clock, timeout)
    return server


def _interleave(
    live: list[tuple[Trial, RunningServer]],
    schedule: TrialSchedule,
    settings: TuneSettings,
    clock: Clock,
    progress: Progress,
) -> bool:
    """Give every live trial its slices, round by round; ``False`` if time ran out."""
    spec, timeout = settings.request, settings.request_timeout
    for r in range(schedule.rounds):
        for level in schedule.levels:
            shift = r % len(live)
            for trial, server in live[shift:] + live[:shift]:
                left = clock.left()
                if left < 0.2:
                    return False
                seconds = min(schedule.slice_seconds, left)
                cell = measure(server.pid, server.url, spec, level, seconds, clock, timeout)
                trial.cells.setdefault(level, Cell(level)).add(cell)
        progress(f"trials: round {r + 1} of {schedule.rounds} done")
    return True


def run_trials(
    settings: TuneSettings,
    trials: list[Trial],
    schedule: TrialSchedule,
    clock: Clock,
    log_dir: Path,
    memory: tuple[float | None, int],
    progress: Progress,
) -> list[str]:
    """Serve and load every trial (filling in their points); return notes on what was cut.

    Args:
        memory: RSS per worker from the probe, and the memory budget in bytes.
    """
    notes: list[str] = []
    groups = batches([t.options for t in trials], *memory)
    if len(groups) > 1:
        notes.append(
            f"the candidates did not fit in memory together: measured in {len(groups)} groups, "
            "interleaved within each group only"
        )
    for group in groups:
        with contextlib.ExitStack() as stack:
            live = []
            for i in group:
                trial = trials[i]
                progress(f"trials: starting {trial.label}")
                folder = log_dir / f"trial{i}-{trial.strategy}"
                server = _start(stack, settings, trial, folder, clock, min(4, schedule.levels[0]))
                if server is not None:
                    live.append((trial, server))
            if live and not _interleave(live, schedule, settings, clock, progress):
                notes.append("the time limit was reached during the trials: some points are short")
    for trial in trials:
        if trial.skipped is None:
            for cell in trial.levels:
                progress(
                    f"trial {trial.label}: concurrency {cell.concurrency}: "
                    f"{cell.throughput:.1f} req/s, p99 {cell.latency_ms(99):.1f} ms"
                )
    return notes
