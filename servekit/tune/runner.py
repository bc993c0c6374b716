"""``tune()``: the plan, the probe, the trials and the recommendation, within the time limit."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servekit.errors import ConfigError
from servekit.loading import check_app_spec, prepare_import_path
from servekit.resolver import resolve
from servekit.sizing import usable_cpus
from servekit.testing import ServerStartError
from servekit.tune.measure import Clock
from servekit.tune.probe import PROBE_STRATEGY, Probe, probe_levels, probe_options, run_probe
from servekit.tune.proc import MemoryBudget, memory_budget
from servekit.tune.recommend import Recommendation, recommend
from servekit.tune.servers import config_error, environment_set_aside, failure_line
from servekit.tune.settings import TuneSettings, candidates
from servekit.tune.sizing import Sizing, size, trial_levels
from servekit.tune.trials import Trial, prepare, run_trials, schedule_trials

__all__ = ["Machine", "TuneError", "TunePlan", "TuneResult", "dry_run", "make_plan", "tune"]

Progress = Callable[[str], None]
#: per server: start-up (as the probe's, estimated before it), warm-up and stop, in seconds
_PER_SERVER = 1.5
#: the shortest probe step
_MIN_STEP = 0.3
#: a probe whose concurrency-1 requests fail more often than this ends the run
_PROBE_FAILING = 0.5


class TuneError(RuntimeError):
    """The app could not be measured (it did not start, or answered nothing)."""


@dataclass(frozen=True)
class Machine:
    """Where tune measures."""

    cpus: int
    memory: MemoryBudget
    load_average: tuple[float, float, float]


@dataclass(frozen=True)
class TunePlan:
    """What a run will do (``--dry-run`` prints this and starts nothing)."""

    settings: TuneSettings
    machine: Machine
    candidates: list[str]
    not_tried: list[str]
    probe_options: dict[str, Any]
    probe_levels: list[int]
    probe_step: float
    warnings: list[str] = field(default_factory=list)

    @property
    def probe_s(self) -> float:
        """The most the probe's load takes."""
        return len(self.probe_levels) * self.probe_step

    @property
    def estimated_s(self) -> float:
        """An upper estimate of the run's length, in seconds (at most the time limit)."""
        s, n = self.settings, len(self.candidates)
        guess = _PER_SERVER * (1 + n) + self.probe_s + 2 * n * s.duration + Clock(0).reserve
        return min(s.time_limit, guess)


def probe_step(settings: TuneSettings, candidates: int, levels: int) -> float:
    """Each probe step's length: half of ``duration``, scaled down with the trials' points
    when the whole run would not fit in the time limit (at least 0.3 s)."""
    load = settings.time_limit - Clock(0).reserve - _PER_SERVER * (1 + candidates)
    wanted = levels * settings.duration / 2 + 2 * candidates * settings.duration
    scale = min(1.0, max(0.0, load) / wanted)
    return max(_MIN_STEP, settings.duration / 2 * scale)


@dataclass
class TuneResult:
    """Everything a run found; :mod:`servekit.tune.report` prints it."""

    plan: TunePlan
    dry_run: bool = False
    probe: Probe | None = None
    target_ms: float | None = None
    target_source: str | None = None
    trials: list[Trial] = field(default_factory=list)
    recommendation: Recommendation | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    others_cpu: float | None = None
    elapsed_s: float = 0.0


@contextlib.contextmanager
def _import_path_kept() -> Iterator[None]:
    cwd, path = os.getcwd(), list(sys.path)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path


def _check_app(settings: TuneSettings) -> None:
    if not isinstance(settings.app, str):
        if not callable(settings.app):
            msg = f"app {settings.app!r}: expected an import string or a WSGI callable"
            raise ConfigError(msg, option="app")
        return
    with _import_path_kept():
        prepare_import_path(settings.chdir, settings.pythonpath)
        check_app_spec(settings.app)


def make_plan(settings: TuneSettings) -> TunePlan:
    """Check the app and the strategies and lay out the run, starting nothing.

    Raises:
        ConfigError: a bad app string, an unknown strategy or one whose package is missing.
    """
    _check_app(settings)
    chosen, not_tried = candidates(settings)
    extra: dict[str, Any] = {"chdir": settings.chdir, "pythonpath": settings.pythonpath}
    warnings: list[str] = []
    for name in [PROBE_STRATEGY, *chosen]:
        plan = resolve(settings.app, name, environ={}, enforce_guard=False, **extra)
        if name in chosen:
            warnings += [f"{name}: {text}" for text in plan.warnings]
    budget = memory_budget()
    if settings.memory is not None:
        budget = MemoryBudget(settings.memory, "--memory")
    machine = Machine(usable_cpus(), budget, os.getloadavg())
    levels = probe_levels(settings.max_concurrency)
    return TunePlan(
        settings,
        machine,
        chosen,
        not_tried,
        probe_options(machine.cpus, settings.max_concurrency),
        levels,
        probe_step(settings, len(chosen), len(levels)),
        warnings,
    )


def _probe(plan: TunePlan, clock: Clock, log_dir: Path, progress: Progress) -> Probe:
    settings = plan.settings
    # the probe may run late by a start-up, not into the trials' time
    until = clock.started + _PER_SERVER + 1.5 * plan.probe_s
    try:
        probe = run_probe(settings, plan.probe_options, plan.probe_step, until, clock, log_dir, progress)
    except ServerStartError as error:
        refused = config_error(error)
        if refused is not None:
            raise refused from None
        msg = f"the app did not start under {PROBE_STRATEGY}: {failure_line(error)}"
        raise TuneError(msg) from None
    first = probe.levels[0] if probe.levels else None
    if first is None or first.error_rate > _PROBE_FAILING:
        statuses = sorted((first.statuses if first else {}).items())
        seen = ", ".join(f"status {k}: {v}" for k, v in statuses)
        failures = ", ".join(f"{k}: {v}" for k, v in sorted((first.failures if first else {}).items()))
        detail = "; ".join(x for x in (seen, failures) if x) or "nothing answered"
        msg = f"most requests failed during the probe ({detail}): check --url and --method"
        raise TuneError(msg)
    return probe


def _trials(
    result: TuneResult, clock: Clock, log_dir: Path, progress: Progress
) -> None:
    plan, probe = result.plan, result.probe
    assert probe is not None
    settings = plan.settings
    sizing = Sizing(
        plan.machine.cpus,
        probe.cpu_fraction,
        settings.max_concurrency,
        plan.machine.memory.bytes,
        probe.rss_per_worker,
    )
    result.trials = [prepare(settings, n, size(n, sizing)) for n in plan.candidates]
    levels = trial_levels(probe.knee, settings.max_concurrency)
    schedule = schedule_trials(
        len(result.trials), levels, settings.duration, clock.left(), probe.startup_s
    )
    if schedule is None:
        result.notes.append("no time was left for the trials within --time-limit")
        for trial in result.trials:
            trial.skipped = "not started: the time limit was reached"
        return
    if schedule.shortened:
        result.notes.append(
            f"trials shortened to {schedule.point_seconds:.1f} s per point to fit --time-limit"
        )
    memory = (probe.rss_per_worker, plan.machine.memory.bytes)
    result.notes += run_trials(settings, result.trials, schedule, clock, log_dir, memory, progress)


def tune(settings: TuneSettings, *, progress: Progress | None = None) -> TuneResult:
    """Measure the app and recommend a strategy, within ``settings.time_limit``.

    Args:
        settings: the app, the requests and the bounds.
        progress: called with a line of progress now and then.

    Raises:
        ConfigError: bad settings (nothing is started).
        TuneError: the app could not be measured (every server started is stopped).
    """
    say = progress or (lambda _line: None)
    plan = make_plan(settings)
    clock = Clock(settings.time_limit)
    result = TuneResult(plan)
    from servekit.tune.report import finish

    with environment_set_aside() as aside, tempfile.TemporaryDirectory(prefix="servekit-tune-") as tmp:
        if aside:
            result.notes.append(
                f"{', '.join(aside)} set aside while measuring: each server had only the "
                "options shown"
            )
        result.probe = _probe(plan, clock, Path(tmp) / "probe", say)
        if settings.p99_ms is not None:
            result.target_ms, result.target_source = settings.p99_ms, "--p99-ms"
        else:
            result.target_ms, result.target_source = result.probe.p99_target_ms(), "probe"
        _trials(result, clock, Path(tmp), say)
        result.recommendation = recommend(result.trials, result.probe, result.target_ms)
    finish(result, clock.elapsed())
    return result


def dry_run(settings: TuneSettings) -> TuneResult:
    """The plan as a result with nothing measured (``--dry-run``): nothing is started.

    Raises:
        ConfigError: as :func:`make_plan`.
    """
    plan = make_plan(settings)
    result = TuneResult(plan, dry_run=True, warnings=list(plan.warnings), notes=list(plan.not_tried))
    if settings.p99_ms is not None:
        result.target_ms, result.target_source = settings.p99_ms, "--p99-ms"
    return result
