"""What a tune run prints: the warnings it raises, a text report, and the JSON document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from servekit.tune.measure import Cell

if TYPE_CHECKING:
    from servekit.tune.runner import TunePlan, TuneResult

__all__ = ["SCHEMA_ID", "finish", "render_plan", "render_text", "to_json"]

SCHEMA_ID = "servekit-tune/1"
#: other processes using more CPUs than this (and a quarter of ours) make figures unreliable
_BUSY = 0.5
_MIB = 1 << 20


def _cells(result: TuneResult) -> list[Cell]:
    probe = result.probe.levels if result.probe is not None else []
    return [*probe, *(c for t in result.trials for c in t.levels)]


def _errors(name: str, cells: list[Cell]) -> str | None:
    bad = sum(c.errors for c in cells)
    if not bad:
        return None
    tried = sum(c.requests + sum(c.failures.values()) for c in cells)
    kinds: dict[str, int] = {}
    for cell in cells:
        for status, n in cell.statuses.items():
            if not 200 <= status < 400:
                kinds[f"status {status}"] = kinds.get(f"status {status}", 0) + n
        for kind, n in cell.failures.items():
            kinds[kind] = kinds.get(kind, 0) + n
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
    return f"{name}: {bad} of {tried} requests failed ({detail})"


def finish(result: TuneResult, elapsed: float) -> None:
    """Add the run's warnings and notes (errors, a busy machine, the app as an object)."""
    machine = result.plan.machine
    for trial in result.trials:
        for text in trial.warnings:
            if (line := f"{trial.strategy}: {text}") not in result.warnings:
                result.warnings.append(line)
    groups = [("probe", result.probe.levels if result.probe else [])]
    groups += [(t.strategy, t.levels) for t in result.trials]
    result.warnings += [w for name, cells in groups if (w := _errors(name, cells))]
    cells = _cells(result)
    seconds = sum(c.seconds for c in cells)
    if seconds:
        result.others_cpu = sum(c.others_cpu for c in cells) / seconds
        if result.others_cpu > max(_BUSY, machine.cpus / 4):
            result.warnings.append(
                f"the machine was busy: other processes used {result.others_cpu:.1f} of its "
                f"{machine.cpus} CPUs while tune measured (load average "
                f"{machine.load_average[0]:.2f} when it started); the figures are lower and "
                "noisier than on an idle machine"
            )
    if any(c.seconds and c.own_cpu / c.seconds > 0.9 for c in cells):
        result.notes.append(
            "tune's load generator used a whole CPU at some points: there the throughput is "
            "its limit (a floor for the server), and it took a CPU from the server"
        )
    _recommendation_notes(result)
    for trial in result.trials:
        if trial.skipped:
            result.notes.append(f"{trial.strategy}: {trial.skipped}")
    result.notes += result.plan.not_tried
    result.elapsed_s = elapsed


def _recommendation_notes(result: TuneResult) -> None:
    rec, most = result.recommendation, result.plan.settings.max_concurrency
    if rec is None:
        return
    trial = rec.trial
    if not rec.met_target:
        result.warnings.append(
            f"no candidate met the p99 target of {result.target_ms:.0f} ms; raise --p99-ms, "
            "or make requests faster"
        )
    if trial.server == "werkzeug":
        result.notes.append(
            f"{trial.strategy} is werkzeug's development server: servekit warns about it (or "
            "refuses it, with guard=error) in production"
        )
    elif trial.capacity is None or trial.capacity >= most:
        result.notes.append(
            f"{trial.strategy} was sized for the {most} connections tune drove "
            "(--max-concurrency): more clients at once need a larger size, which tune did not measure"
        )


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _point(cell: Cell) -> list[str]:
    rss = "-" if cell.rss_per_worker is None else f"{cell.rss_per_worker / _MIB:.0f}"
    return [
        str(cell.concurrency),
        f"{cell.throughput:.1f}",
        f"{cell.latency_ms(50):.1f}",
        f"{cell.latency_ms(99):.1f}",
        str(cell.at_once),
        str(cell.errors),
        f"{cell.cpu_ms_per_request:.2f}",
        rss,
    ]


_POINT_HEAD = ["concurrency", "req/s", "p50 ms", "p99 ms", "at once", "errors", "CPU ms/req", "RSS MiB/worker"]


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / _MIB:.0f} MiB"


def render_plan(plan: TunePlan) -> str:
    """The plan for people (``--dry-run``)."""
    s, m = plan.settings, plan.machine
    paths = ", ".join(p if w == 1 else f"{p} (weight {w})" for p, w in s.request.paths)
    body = f"{len(s.request.body)} bytes" if s.request.body is not None else "none"
    opts = " ".join(f"{k}={v}" for k, v in plan.probe_options.items())
    lines = [
        f"app: {s.app if isinstance(s.app, str) else repr(s.app)}",
        f"requests: {s.request.method} {paths}; body: {body}",
        f"machine: {m.cpus} usable CPUs, memory budget {_size(m.memory.bytes)} "
        f"({m.memory.source}), load average {m.load_average[0]:.2f}",
        f"1. probe: gthread {opts} at concurrency {', '.join(map(str, plan.probe_levels))} "
        f"({plan.probe_step:g} s each; it stops when throughput stops rising)",
        f"2. trials: {', '.join(plan.candidates) or 'none'}, sized from the probe, at two loads "
        f"around its knee, {s.duration:g} s each, interleaved",
        "3. recommendation: the most throughput with p99 within "
        + (f"{s.p99_ms:g} ms" if s.p99_ms is not None else "3x the probe's p99 at concurrency 1 (at least 25 ms)"),
        f"time limit: {s.time_limit:g} s (estimated {plan.estimated_s:.0f} s)",
        "tune sends these requests many times, to servers it starts on 127.0.0.1 only; "
        "the app must tolerate that (use a test database, not production)",
    ]
    lines += [f"note: {n}" for n in plan.not_tried]
    return "\n".join(lines)


def _probe_lines(result: TuneResult) -> list[str]:
    probe = result.probe
    if probe is None:
        return []
    opts = " ".join(f"{k}={v}" for k, v in probe.options.items())
    lines = [f"probe: {probe.strategy} {opts}; {probe.stopped}"]
    lines += _table([_POINT_HEAD[:-1], *(_point(c)[:-1] for c in probe.levels)])
    cpu = round(probe.cpu_fraction * 100)
    lines.append(
        f"{probe.classification}: {cpu}% of a request's time on the server is CPU "
        f"({probe.cpu_ms:.2f} ms CPU of {probe.server_ms:.2f} ms at concurrency 1)"
    )
    return lines


def _trial_lines(result: TuneResult) -> list[str]:
    if not result.trials or result.target_ms is None:
        return []
    source = "--p99-ms" if result.target_source == "--p99-ms" else "3x the probe's p99 at concurrency 1"
    rows = [["strategy", "options", "capacity", *_POINT_HEAD]]
    for trial in result.trials:
        opts = " ".join(f"{k}={v}" for k, v in trial.options.items()) or "-"
        cap = "unbounded" if trial.capacity is None else str(trial.capacity)
        if not trial.levels:
            rows.append([trial.strategy, opts, cap, trial.skipped or "not measured", *[""] * 7])
        for i, cell in enumerate(trial.levels):
            rows.append([trial.strategy, opts, cap] if i == 0 else ["", "", ""])
            rows[-1] += _point(cell)
    return [f"trials (p99 target {result.target_ms:.0f} ms, {source}):", *_table(rows)]


def _recommendation_lines(result: TuneResult) -> list[str]:
    rec = result.recommendation
    if rec is None:
        ran = any(t.levels for t in result.trials)
        why = "no candidate answered without errors" if ran else "no trial ran; see the notes"
        return [f"recommendation: none ({why})"]
    trial = rec.trial
    lines = [f"recommended: {trial.strategy}", *(f"  {line}" for line in rec.env)]
    held = trial.measured_capacity
    measured = "" if held is None else f" (measured: {held} at once)"
    if trial.capacity is None:
        lines.append(f"capacity: no fixed limit ({trial.capacity_text}){measured}")
    else:
        noun = "request" if trial.capacity == 1 else "requests"
        lines.append(f"capacity: serves up to {trial.capacity} {noun} at once: {trial.capacity_text}{measured}")
    lines.append(f"reason: {rec.reason}")
    return lines


def render_text(result: TuneResult) -> str:
    """The report for people: machine, probe, trials table, the recommendation, warnings."""
    s, m = result.plan.settings, result.plan.machine
    paths = ", ".join(p if w == 1 else f"{p} (weight {w})" for p, w in s.request.paths)
    lines = [
        f"app: {s.app if isinstance(s.app, str) else repr(s.app)}; requests: {s.request.method} {paths}",
        f"machine: {m.cpus} usable CPUs, memory budget {_size(m.memory.bytes)} ({m.memory.source}), "
        f"load average {m.load_average[0]:.2f}",
        "",
        *_probe_lines(result),
        "",
        *_trial_lines(result),
        "",
        *_recommendation_lines(result),
    ]
    lines += [f"WARNING: {w}" for w in result.warnings]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"took {result.elapsed_s:.1f} s (time limit {s.time_limit:g} s)")
    return "\n".join(lines)


def _probe_json(result: TuneResult) -> dict[str, Any] | None:
    probe = result.probe
    if probe is None:
        return None
    rss = probe.rss_per_worker
    return {
        "strategy": probe.strategy,
        "options": dict(probe.options),
        "levels": [c.describe() for c in probe.levels],
        "stopped": probe.stopped,
        "server_ms_per_request": round(probe.server_ms, 3),
        "cpu_ms_per_request": round(probe.cpu_ms, 3),
        "knee_concurrency": probe.knee,
        "rss_mib_per_worker": None if rss is None else round(rss / _MIB, 1),
    }


def _trial_json(result: TuneResult) -> list[dict[str, Any]]:
    out = []
    for trial in result.trials:
        out.append(
            {
                "strategy": trial.strategy,
                "options": dict(trial.options),
                "capacity": trial.capacity,
                "capacity_text": trial.capacity_text,
                "measured_capacity": trial.measured_capacity,
                "levels": [c.describe() for c in trial.levels],
                "skipped": trial.skipped,
            }
        )
    return out


def to_json(result: TuneResult) -> dict[str, Any]:
    """The run as one JSON object (the schema is :data:`servekit.tune.schema.SCHEMA`)."""
    plan, probe = result.plan, result.probe
    s, m = plan.settings, plan.machine
    fraction = None if probe is None else round(probe.cpu_fraction, 3)
    return {
        "schema": SCHEMA_ID,
        "app": s.app if isinstance(s.app, str) else repr(s.app),
        "dry_run": result.dry_run,
        "requests": {
            "method": s.request.method,
            "paths": [{"path": p, "weight": w} for p, w in s.request.paths],
            "body_bytes": 0 if s.request.body is None else len(s.request.body),
            "headers": [name for name, _ in s.request.headers],
        },
        "limits": {
            "duration_s": s.duration,
            "time_limit_s": s.time_limit,
            "max_concurrency": s.max_concurrency,
            "request_timeout_s": s.request_timeout,
        },
        "machine": {
            "cpus": m.cpus,
            "memory_budget_bytes": m.memory.bytes,
            "memory_source": m.memory.source,
            "load_average": [round(x, 2) for x in m.load_average],
            "others_cpu": None if result.others_cpu is None else round(result.others_cpu, 2),
        },
        "plan": {
            "probe_strategy": "gthread",
            "probe_options": dict(plan.probe_options),
            "probe_levels": list(plan.probe_levels),
            "probe_step_s": plan.probe_step,
            "candidates": list(plan.candidates),
            "estimated_s": round(plan.estimated_s, 1),
        },
        "probe": _probe_json(result),
        "classification": None if probe is None else probe.classification,
        "cpu_fraction": fraction,
        "io_fraction": None if fraction is None else round(1 - fraction, 3),
        "p99_target_ms": None if result.target_ms is None else round(result.target_ms, 2),
        "p99_target_source": result.target_source,
        "trials": _trial_json(result),
        "recommendation": None
        if result.recommendation is None
        else result.recommendation.describe(),
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "elapsed_s": round(result.elapsed_s, 2),
    }
